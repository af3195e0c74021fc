/* scalar.c - the scalar semantics of the elementwise ops (OPF_ELEMWISE in ops.def),
 * computed in double and rounded once to f32 by the caller.  The interpreter
 * (interp.c) and constant folding (passes/const_fold.c) both call these, so a folded
 * constant is exactly what the interpreter would have computed; codegen's vector
 * versions are in codegen (cg_unary, cg_binary). */
#include "ir/ir.h"

#include <math.h>

double
ir_scalar_unary(const Op *op, double x)
{
	switch (op->code) {
	case OP_SCALE: return x * op->fa[0];
	case OP_SILU: return x / (1.0 + exp(-x));
	case OP_TANH: return tanh(x);
	case OP_GELU:
		if (op->ia[0] == 1) /* tanh approximation */
			return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
		return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
	default: return NAN; /* not an elementwise op of arity 1 */
	}
}

double
ir_scalar_binary(Opcode code, double x, double y)
{
	switch (code) {
	case OP_ADD: return x + y;
	case OP_SUB: return x - y;
	case OP_MUL: return x * y;
	default: return NAN; /* not an elementwise op of arity 2 */
	}
}
