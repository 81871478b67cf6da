// quantize_pack__portable: QuantizePack's rows in plain C++ (GCC vectorises QuantRowScalar).
#include "quantize_pack.h"

namespace qcompile {
namespace bitserial {

const QuantPackKernel quantize_pack__portable = {
    {QuantRowScalar<Rounding::kRound>, QuantRowScalar<Rounding::kCeil>,
     QuantRowScalar<Rounding::kFloor>, QuantRowScalar<Rounding::kRoundToZero>},
    OrPlaneBitsScalar};

}  // namespace bitserial
}  // namespace qcompile
