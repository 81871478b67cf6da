// Run this library's static destructors when it is unloaded, as gcc's crtbeginS.o does.
//
// The compiler registers each static object's destructor with __cxa_atexit(dtor, obj,
// &__dso_handle), and the C library runs them at exit() -- unless __cxa_finalize(&__dso_handle)
// ran them earlier, which crtbeginS.o's .fini_array entry does when dlclose unloads the library.
// zig links shared libraries without crtbeginS.o (ziglang/zig#17908), so after onnxruntime
// dlcloses libqcompile_ops.so (its Python binding does before the process exits) those stay
// in glibc's exit list, pointing into unmapped code, and the process segfaults in exit().
// Only the zig toolchain (cmake/zig-x86_64-linux-gnu.2.28.cmake) links this file.

extern "C" {
// Defined by the linker (lld), one per shared object; hidden, so this is the library's own.
extern __attribute__((visibility("hidden"))) void* __dso_handle;
void __cxa_finalize(void* dso);
}

namespace {

__attribute__((destructor)) void FinalizeThisLibrary() { __cxa_finalize(&__dso_handle); }

}  // namespace
