/* values.c - what kernels.c and ops.c read from the entry being lowered: a value's
 * buffer or scalar (argument, constant, param region or arena slot, from the plan),
 * its rows and length at run time, the weight regions of params and rope tables,
 * and the failure exits of the entry (a status returned when a check fails). */
#include "codegen/codegen.h"

/* ---- values ---- */

LLVMValueRef
cg_rows(Cg *g, Type t)
{
	if (t.dyn0) {
		int64_t inner = 1;
		for (int i = 1; i + 1 < t.rank; i++)
			inner *= t.dims[i];
		return inner == 1 ? g->nrows : LLVMBuildMul(g->b, g->nrows, cg_i64(g, inner), "");
	}
	return cg_i64(g, cg_static_rows(t));
}

LLVMValueRef
cg_len(Cg *g, Type t)
{
	if (t.rank == 0)
		return cg_i64(g, 1);
	return t.dyn0 ? g->nrows : cg_i64(g, t.dims[0]);
}

bool
cg_known_early(const Func *f, ValueId v)
{
	Opcode c = f->ops[f->vals[v].def].code;
	return f->vals[v].type.rank == 0 && (c == OP_ARG || c == OP_CONST);
}

LLVMValueRef
cg_param_ptr(Cg *g, uint32_t param, CgLayout layout)
{
	uint32_t r = cg_weights_region(&g->r->weights, layout, (int32_t)param, 0, 0, NULL, g->m,
	                               cg_target_nr(g->t));
	return cg_gepb(g, g->wts, (int64_t)g->r->weights.regions[r].offset);
}

LLVMValueRef
cg_rope_ptr(Cg *g, int64_t hd, const Op *rope)
{
	uint32_t r = cg_weights_region(&g->r->weights, CG_ROPE, -1, g->rope_len, hd, rope, g->m,
	                               cg_target_nr(g->t));
	return cg_gepb(g, g->wts, (int64_t)g->r->weights.regions[r].offset);
}

LLVMValueRef
cg_val_ptr(Cg *g, ValueId v)
{
	const Op *d = ir_def((Func *)g->f, v);
	if (d->code == OP_ARG)
		return g->argv[d->ia[0]];
	if (d->code == OP_PARAM)
		return cg_param_ptr(g, (uint32_t)d->ia[0], CG_ROWMAJOR);
	if ((d->code == OP_KNOB || d->code == OP_CONST) && g->f->vals[v].type.rank == 0) {
		/* a scalar leaf has no buffer: a stack slot holds it for ops that read memory */
		LLVMValueRef slot = cg_alloca(g, g->i32, "leaf");
		cg_store(g, cg_val_scalar(g, v), slot, 4);
		return slot;
	}
	if (g->plan.offset[v] < 0)
		ELIDE_ICE("value without a buffer");
	return cg_gepb(g, g->arena, g->plan.offset[v]);
}

LLVMValueRef
cg_val_scalar(Cg *g, ValueId v)
{
	const Op *d = ir_def((Func *)g->f, v);
	Type t = g->f->vals[v].type;
	if (d->code == OP_ARG)
		return g->argv[d->ia[0]];
	if (d->code == OP_CONST)
		return t.dtype == DT_F32 ? cg_f32c(g, d->fa[0]) : cg_i32c(g, (int32_t)d->ia[0]);
	if (d->code == OP_KNOB)
		return cg_knob_value(g, d);
	return cg_load(g, t.dtype == DT_F32 ? g->f32 : g->i32, cg_val_ptr(g, v), 4); /* f32, i32, bool (i32) */
}

/* ---- failure checks ---- */

void
cg_fail_if(Cg *g, LLVMValueRef cond, int status)
{
	LLVMBasicBlockRef bad = LLVMAppendBasicBlockInContext(g->c, g->fn, "bad");
	LLVMBasicBlockRef ok = LLVMAppendBasicBlockInContext(g->c, g->fn, "ok");
	LLVMBuildCondBr(g->b, cond, bad, ok);
	LLVMPositionBuilderAtEnd(g->b, bad);
	cg_store(g, cg_i32c(g, status), g->failst, 4);
	LLVMBuildBr(g->b, g->fail);
	LLVMPositionBuilderAtEnd(g->b, ok);
}

/* Whether embed op's indices are positions(tokens, start) with a start the up-front
 * checks can see. */
bool
cg_embeds_positions(const Func *f, const Op *op)
{
	const Op *d = ir_def((Func *)f, op->args[1]);
	return d->code == OP_POSITIONS && cg_known_early(f, d->args[1]);
}

/* Token arguments and early positions are checked up front; other computed indices
 * are checked where the embed runs. */
bool
cg_embed_checked_early(const Func *f, const Op *op)
{
	return ir_def((Func *)f, op->args[1])->code == OP_ARG || cg_embeds_positions(f, op);
}

/* Fails the entry with `status` unless the i32 scalar start (sign-extended) and the
 * i64 count n satisfy 0 <= start and start + n <= bound. */
void
cg_fail_outside(Cg *g, LLVMValueRef start, LLVMValueRef n, int64_t bound, int status)
{
	LLVMValueRef s64 = LLVMBuildSExt(g->b, start, g->i64, "");
	LLVMValueRef end = LLVMBuildAdd(g->b, s64, n, "");
	cg_fail_if(g, LLVMBuildOr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, s64, cg_i64(g, 0), ""),
	                          LLVMBuildICmp(g->b, LLVMIntSGT, end, cg_i64(g, bound), ""), ""),
	           status);
}
