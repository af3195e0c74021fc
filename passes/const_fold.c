/* const_fold.c - pass 'const-fold': constant folding and exact identities.
 * A 'const' op is a splat: every element of its type holds the same value.  An op
 * whose operands are all splats is replaced by the splat of its result, computed
 * exactly as the interpreter does (double arithmetic, rounded once to f32), so
 * folding never changes an output.  Identities that are exact in IEEE arithmetic
 * remove ops: scale by 1, x * 1, 1 * x, x - 0, x + 0, 0 + x (up to the sign of a
 * zero sum).  Non-finite constants are left alone.
 * Algorithm, per entry:
 *   1. walk the ops in order, renaming operands through the identities found so far;
 *   2. record every splat constant (value and dtype);
 *   3. an op of splat operands that is elementwise (add, sub, mul, scale, silu, gelu,
 *      tanh, ...: ir_scalar_unary / ir_scalar_binary, the interpreter's functions) or
 *      softmax, row, slice, concat (equal splats), argmax becomes a 'const' of its own
 *      type;
 *   4. an identity records replacement[dst] = x and drops the op;
 *   5. rebuild the op array with the replacements (constants left unused are for
 *      'dce').
 * Needs: operands defined before use.  Keeps: value types, layer regions. */
#include "passes/passes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct Splat {
	bool known;
	double v;   /* the value (f32 or i32, exactly representable in a double) */
} Splat;

/* Whether value u is a splat of f32 value c. */
static bool
is_f32(const Func *f, const Splat *s, ValueId u, double c)
{
	return s[u].known && f->vals[u].type.dtype == DT_F32 && s[u].v == c;
}

/* The folded value of op over splat operands; false when it does not fold. */
static bool
fold(const Func *f, const Op *op, const Splat *s, double *out)
{
	for (uint32_t a = 0; a < op->nargs; a++)
		if (!s[op->args[a]].known || !isfinite(s[op->args[a]].v) || f->vals[op->args[a]].type.dtype != DT_F32)
			return false;
	double x = op->nargs ? s[op->args[0]].v : 0, y = op->nargs > 1 ? s[op->args[1]].v : 0;
	Type t = f->vals[op->dst].type;
	/* elementwise ops: the interpreter's own scalar functions (ir/scalar.c) */
	if ((ir_op_flags[op->code] & OPF_ELEMWISE) && op->nargs == (uint32_t)ir_op_arity[op->code]) {
		*out = (float)(op->nargs == 1 ? ir_scalar_unary(op, x) : ir_scalar_binary(op->code, x, y));
		return true;
	}
	switch (op->code) {
	case OP_SOFTMAX: /* every element equal: exp(0) / N */
		*out = (float)(1.0 / (double)(t.rank ? t.dims[t.rank - 1] : 1));
		return true;
	case OP_ROW:
	case OP_SLICE:
		*out = x;
		return true;
	case OP_CONCAT:
		for (uint32_t a = 1; a < op->nargs; a++)
			if (s[op->args[a]].v != x)
				return false;
		*out = x;
		return true;
	case OP_ARGMAX: /* the first of equal maxima */
		*out = 0;
		return true;
	default:
		return false;
	}
}

/* The operand op reduces to by an exact identity, or IR_NO_VALUE. */
static ValueId
identity(const Func *f, const Op *op, const Splat *s)
{
	ValueId a = op->nargs > 0 ? op->args[0] : IR_NO_VALUE, b = op->nargs > 1 ? op->args[1] : IR_NO_VALUE;
	switch (op->code) {
	case OP_SCALE:
		return op->fa[0] == 1.0f ? a : IR_NO_VALUE;
	case OP_MUL:
		return is_f32(f, s, b, 1.0) ? a : is_f32(f, s, a, 1.0) ? b : IR_NO_VALUE;
	case OP_ADD:
		return is_f32(f, s, b, 0.0) ? a : is_f32(f, s, a, 0.0) ? b : IR_NO_VALUE;
	case OP_SUB:
		return is_f32(f, s, b, 0.0) ? a : IR_NO_VALUE;
	default:
		return IR_NO_VALUE;
	}
}

bool
pass_const_fold(Module *m, Diag *d)
{
	(void)d;
	for (uint32_t fi = 0; fi < m->nfuncs; fi++) {
		Func *f = m->funcs[fi];
		Splat *s = xcalloc(f->nvals + 1, sizeof *s);
		ValueId *repl = xmalloc((f->nvals + 1) * sizeof *repl);
		bool *keep = xmalloc((f->nops + 1) * sizeof *keep);
		bool changed = false;
		for (uint32_t v = 0; v < f->nvals; v++)
			repl[v] = IR_NO_VALUE;
		for (uint32_t i = 0; i < f->nops; i++) {
			Op *op = &f->ops[i];
			keep[i] = true;
			bool ok = op->dst < f->nvals && (unsigned)op->code < OP_COUNT;
			for (uint32_t a = 0; a < op->nargs; a++) {
				if (op->args[a] >= f->nvals) {
					ok = false;
					continue;
				}
				if (repl[op->args[a]] != IR_NO_VALUE)
					op->args[a] = repl[op->args[a]];
			}
			if (!ok)
				continue;
			Type t = f->vals[op->dst].type;
			if (op->code == OP_CONST) {
				s[op->dst] = (Splat){ true, t.dtype == DT_I32 ? (double)(int32_t)op->ia[0] : (double)op->fa[0] };
				continue;
			}
			if (!(ir_op_flags[op->code] & OPF_PURE) || (ir_op_flags[op->code] & OPF_LEAF))
				continue;
			double c;
			if (fold(f, op, s, &c)) {
				Op k = { .code = OP_CONST, .dst = op->dst, .layer = op->layer, .loc = op->loc };
				if (t.dtype == DT_I32)
					k.ia[0] = (int64_t)c;
				else
					k.fa[0] = (float)c;
				*op = k;
				s[op->dst] = (Splat){ true, c };
				changed = true;
				continue;
			}
			ValueId x = identity(f, op, s);
			if (x != IR_NO_VALUE && ir_type_eq(f->vals[x].type, t)) {
				repl[op->dst] = repl[x] != IR_NO_VALUE ? repl[x] : x;
				keep[i] = false;
				changed = true;
			}
		}
		if (changed)
			pass_rebuild_func(m, f, keep, repl);
		free(s);
		free(repl);
		free(keep);
	}
	return true;
}
