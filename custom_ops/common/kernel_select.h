// The one kernel-selection mechanism of the op library. Every op family keeps ONE table of its
// kernel variants, best first; a row starts with a VariantId. A node runs
//   - the variant its family's environment variable names, when set (an override for A/B runs);
//   - else the variant its optional string attribute `kernel` names;
//   - else the first variant this CPU supports ("best available").
// An unknown or unsupported name is an error naming the node, the op and the valid names.
// qcompile.runtime.kernel_variants(op_type) lists a table through common/kernel_registry.cc.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include "op_util.h"

namespace qcompile {

struct VariantId {
  const char* name;     // value of the `kernel` attribute (and of the override variable)
  const char* isa;      // what the CPU must have, for messages ("" = nothing)
  bool (*supported)();  // from cpu_features; false when the variant is not compiled in
};

// A family's table: rows of a struct whose first member `id` is a VariantId.
template <class Row>
struct VariantTable {
  const Row* rows;
  size_t count;
  const char* env;  // the override variable, e.g. "QCOMPILE_KERNEL"; nullptr: none
};

// "a, b, c": the names of the rows (all of them, or only the supported ones).
template <class Row>
std::string VariantNames(const VariantTable<Row>& t, bool supported_only) {
  std::string names;
  for (size_t i = 0; i < t.count; ++i) {
    if (supported_only && !t.rows[i].id.supported()) continue;
    names += names.empty() ? "" : ", ";
    names += t.rows[i].id.name;
  }
  return names;
}

// The row a node runs (see above); *forced is set when a name chose it. Fails (OpError, with
// `label` first) on an unknown or unsupported name, or when no row is supported.
template <class Row>
const Row& SelectVariant(const VariantTable<Row>& t, const std::string& label,
                         const std::string& attr, bool* forced = nullptr) {
  const char* env = t.env ? std::getenv(t.env) : nullptr;
  const bool from_env = env && *env;
  const std::string name = from_env ? std::string(env) : attr;
  if (forced) *forced = !name.empty();
  if (name.empty()) {
    for (size_t i = 0; i < t.count; ++i)
      if (t.rows[i].id.supported()) return t.rows[i];
    Fail(label, "no kernel variant of this op is supported on this CPU");
  }
  for (size_t i = 0; i < t.count; ++i) {
    const VariantId& id = t.rows[i].id;
    if (name != id.name) continue;
    if (id.supported()) return t.rows[i];
    if (from_env)
      Fail(label, t.env, "=", name, " names a kernel variant that this CPU cannot run (needs ",
           id.isa, "); unset it or pick a supported variant");
    Fail(label, "attribute 'kernel': '", name, "' names a kernel variant that this CPU cannot ",
         "run (needs ", id.isa, "); this CPU runs ", VariantNames(t, true));
  }
  if (from_env)
    Fail(label, t.env, "=", name, " is not a kernel variant; expected one of ",
         VariantNames(t, false));
  Fail(label, "attribute 'kernel': '", name, "' is not a kernel variant of this op; expected ",
       "one of ", VariantNames(t, false), " (or empty: the best this CPU runs)");
}

// The optional `kernel` attribute ("" when absent).
inline std::string KernelAttr(const Attrs& at) { return at.String("kernel", ""); }

}  // namespace qcompile
