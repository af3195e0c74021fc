/* plan.c - fusion decisions and the memory plan of one function.
 * Algorithm:
 *   1. Fusion: a linear whose only user is a unary elementwise op (silu, gelu, tanh,
 *      scale) takes it as an epilogue; then, if the result's only user is add, sub or
 *      mul with an operand defined before the linear (of the same shape, or one row
 *      broadcast to every row: a bias; params and arguments are always ready), that op
 *      too.  Folded ops are
 *      marked `skip`; the linear then defines the last folded op's value.  A folded op
 *      is in the linear's branch (no fusion across if/else/end; a phi is never folded).
 *   2. Liveness: a buffer is live from the op that writes it to its last use.
 *   3. Offsets: values in definition order, first fit into the gaps left by buffers
 *      whose last use came strictly before (a kernel may read its inputs while it
 *      writes its output, so an input never shares with the output of its op).
 *   4. A linear of a q8/q4 param with int8 activations (Param.act) quantises its
 *      input into one scratch region after the values (the largest any such linear
 *      of the function needs; one linear at a time).
 * Leaves (args, params, consts, knobs), the results of void ops (if, else, end,
 * kv_write, stat) and `ret` need no arena buffer; a bool is one i32.
 * Control flow keeps this linear order valid: a path runs a subsequence of the ops,
 * plus, at the end of each branch, copies of the phis' operands into the phis'
 * buffers (codegen/control.c).  Those copies write a phi's buffer before its op
 * index, but nothing runs between them and the phi, and what they read or what is
 * read later on that path is live at the phi (a phi operand's last use is its phi, a
 * later phi's operands are live at an earlier phi; copies run in phi order), so no
 * such value shares the phi's buffer.  tests/e2e/test_cg_plan.c replays every path. */
#include "codegen/codegen.h"

#include <stdlib.h>
#include <string.h>

int64_t
cg_static_rows(Type t)
{
	int64_t r = 1;
	for (int i = 0; i + 1 < t.rank; i++)
		r *= t.dims[i];
	return r;
}

int64_t
cg_cols(Type t)
{
	return t.rank ? t.dims[t.rank - 1] : 1;
}

/* Any elementwise op of one operand (cg_unary lowers each). */
static bool
is_unary_epilogue(Opcode c)
{
	return ir_op_is_unary_elemwise(c);
}

void
cg_branch_scopes(const Func *f, uint32_t *scope)
{
	uint32_t *stack = xmalloc((f->nops + 1) * sizeof *stack), depth = 0;
	for (uint32_t i = 0; i < f->nops; i++) {
		Opcode c = f->ops[i].code;
		if ((c == OP_ELSE || c == OP_END) && depth)
			depth--;
		scope[i] = depth ? stack[depth - 1] : UINT32_MAX;
		if (c == OP_IF || c == OP_ELSE)
			stack[depth++] = i;
	}
	free(stack);
}

static void
plan_fusion(const Func *f, CgPlan *p, const uint32_t *nuses, const uint32_t *user)
{
	uint32_t *scope = xmalloc((f->nops + 1) * sizeof *scope);
	cg_branch_scopes(f, scope);
	for (uint32_t i = 0; i < f->nops; i++) {
		const Op *op = &f->ops[i];
		if (op->code != OP_LINEAR || p->fuse[i].skip)
			continue;
		ValueId cur = op->dst;
		Type t = f->vals[cur].type;
		if (nuses[cur] == 1 && scope[user[cur]] == scope[i]) {
			const Op *u = &f->ops[user[cur]];
			if (is_unary_epilogue(u->code) && ir_type_eq(f->vals[u->dst].type, t)) {
				p->fuse[i].unary = (int32_t)user[cur];
				p->fuse[user[cur]].skip = true;
				cur = u->dst;
			}
		}
		if (nuses[cur] == 1 && scope[user[cur]] == scope[i]) {
			const Op *u = &f->ops[user[cur]];
			if ((u->code == OP_ADD || u->code == OP_SUB || u->code == OP_MUL) && u->nargs == 2
			    && ir_type_eq(f->vals[u->dst].type, t)) {
				bool swap = u->args[1] == cur;
				ValueId o = swap ? u->args[0] : u->args[1];
				Type ot = f->vals[o].type;
				bool row = ot.rank == 1 && !ot.dyn0 && ot.dims[0] == cg_cols(t) && t.rank >= 2;
				bool ready = f->vals[o].def < i || (ir_op_flags[f->ops[f->vals[o].def].code] & OPF_LEAF);
				if (o != cur && (ir_type_eq(ot, t) || row) && ready) {
					p->fuse[i].binary = (int32_t)user[cur];
					p->fuse[i].bin_swap = swap;
					p->fuse[i].other_row = row && !ir_type_eq(ot, t);
					p->fuse[i].other = o;
					p->fuse[user[cur]].skip = true;
					cur = u->dst;
				}
			}
		}
		p->fuse[i].out = cur;
	}
	free(scope);
}

typedef struct Live {
	int64_t off, size;
	uint32_t end;
} Live;

void
cg_plan_func(const Module *m, const Func *f, bool fuse, CgPlan *p)
{
	p->fuse = xcalloc(f->nops + 1, sizeof *p->fuse);
	p->offset = xmalloc((f->nvals + 1) * sizeof *p->offset);
	p->size = 0;
	uint32_t *nuses = xcalloc(f->nvals + 1, sizeof *nuses);
	uint32_t *user = xcalloc(f->nvals + 1, sizeof *user);
	uint32_t *end = xcalloc(f->nvals + 1, sizeof *end);
	for (uint32_t v = 0; v < f->nvals; v++) {
		p->offset[v] = -1;
		end[v] = f->vals[v].def;
	}
	for (uint32_t i = 0; i < f->nops; i++) {
		p->fuse[i] = (CgFuse){ .unary = -1, .binary = -1, .other = IR_NO_VALUE, .out = f->ops[i].dst };
		for (uint32_t a = 0; a < f->ops[i].nargs; a++) {
			ValueId v = f->ops[i].args[a];
			if (v >= f->nvals)
				continue;
			nuses[v]++;
			user[v] = i;
			if (end[v] < i)
				end[v] = i;
		}
	}
	if (fuse)
		plan_fusion(f, p, nuses, user);

	Live *live = xmalloc((f->nops + 1) * sizeof *live);
	uint32_t nlive = 0;
	for (uint32_t i = 0; i < f->nops; i++) {
		const Op *op = &f->ops[i];
		if (p->fuse[i].skip || (ir_op_flags[op->code] & (OPF_LEAF | OPF_VOID)) || op->code == OP_RET)
			continue;
		ValueId v = p->fuse[i].out;
		Type t = f->vals[v].type;
		int64_t n = ir_type_numel(t);
		int64_t size = ((n > 0 ? n : 1) * (int64_t)ir_dtype_size(t.dtype) + 63) & ~(int64_t)63;
		/* drop buffers dead before this op */
		uint32_t k = 0;
		for (uint32_t j = 0; j < nlive; j++)
			if (live[j].end >= i)
				live[k++] = live[j];
		nlive = k;
		/* live is kept sorted by offset: first gap that fits */
		int64_t at = 0;
		uint32_t pos = 0;
		for (; pos < nlive; pos++) {
			if (live[pos].off - at >= size)
				break;
			at = live[pos].off + live[pos].size;
		}
		memmove(&live[pos + 1], &live[pos], (nlive - pos) * sizeof *live);
		live[pos] = (Live){ .off = at, .size = size, .end = end[v] > i ? end[v] : i };
		nlive++;
		p->offset[v] = at;
		if ((uint64_t)(at + size) > p->size)
			p->size = (uint64_t)(at + size);
	}
	free(live);
	free(nuses);
	free(user);
	free(end);
	/* 4. the quantised activations of q8/q4 linears with int8 activations: one region
	 *    after the values, sized for the largest */
	p->qscratch = -1;
	int64_t need = 0;
	for (uint32_t i = 0; i < f->nops; i++) {
		int64_t b = cg_qscratch_bytes(m, f, &f->ops[i]);
		if (b > need)
			need = b;
	}
	if (need) {
		p->qscratch = (int64_t)((p->size + 63) & ~(uint64_t)63);
		p->size = (uint64_t)(p->qscratch + need);
	}
}

int64_t
cg_qscratch_bytes(const Module *m, const Func *f, const Op *op)
{
	if (!m || op->code != OP_LINEAR) /* no module: no params to read */
		return 0;
	const Op *wd = &f->ops[f->vals[op->args[1]].def];
	if (wd->code != OP_PARAM)
		return 0;
	const Param *pm = &m->params[wd->ia[0]];
	if ((pm->format != QF_Q8 && pm->format != QF_Q4) || pm->act != AF_INT8)
		return 0;
	Type xt = f->vals[op->args[0]].type;
	int64_t rows = cg_static_rows(xt), ng = ir_quant_groups(cg_cols(xt), pm->group);
	return cg_qscratch_codes(rows, ng * pm->group) + 2 * ((rows * ng * 4 + 63) & ~(int64_t)63);
}

void
cg_plan_free(CgPlan *p)
{
	free(p->fuse);
	free(p->offset);
	p->fuse = NULL;
	p->offset = NULL;
}
