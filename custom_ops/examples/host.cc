// Smallest C++ host of libqcompile_ops.so: register the library, load a model, list its
// inputs. Build with -DQCOMPILE_BUILD_EXAMPLES=ON (links libonnxruntime; set ORT_LIBRARY if it
// is not on the default library path).
//
//   qcompile_host model.q.onnx /path/to/qcompile/libqcompile_ops.so
//
// With the onnxruntime Python wheel's library: -DORT_LIBRARY=.../onnxruntime/capi/
// libonnxruntime.so.1.<minor>.<patch>, and at run time a directory on LD_LIBRARY_PATH holding a
// link named libonnxruntime.so.1 (its soname) to that file.
#include <cstdio>

#include "onnxruntime_cxx_api.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL.onnx LIBQCOMPILE_OPS.so\n", argv[0]);
    return 2;
  }
  try {
    Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "qcompile_host");
    Ort::SessionOptions options;
    options.SetIntraOpNumThreads(1);
    options.RegisterCustomOpsLibrary(argv[2]);  // the op library; ORT calls RegisterCustomOps
    Ort::Session session(env, argv[1], options);
    Ort::AllocatorWithDefaultOptions alloc;
    for (size_t i = 0; i < session.GetInputCount(); ++i)
      std::printf("input %zu: %s\n", i, session.GetInputNameAllocated(i, alloc).get());
    std::printf("loaded %s with qcompile ops\n", argv[1]);
  } catch (const Ort::Exception& e) {
    std::fprintf(stderr, "onnxruntime error: %s\n", e.what());
    return 1;
  }
  return 0;
}
