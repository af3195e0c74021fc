/* control.c - structured control flow in the entry function: 'if', 'else' and 'end'
 * as LLVM basic blocks, the copies that fill a phi's buffer on each edge into the
 * join, 'ret' anywhere (an early return of an exit site, or the last op), select,
 * stat slots and knob reads.
 * Algorithm, ops in program order with a stack of open regions (Cg.branches):
 *   1. 'if': load the bool condition (an i32); branch to a fresh 'then' block, or to
 *      the region's 'other' block; continue in 'then'.
 *   2. 'else': the first branch ends: copy operand 0 of every phi that follows the
 *      region's 'end' into that phi's buffer, in phi order, branch to 'join';
 *      continue in 'other' (the second branch).
 *   3. 'end': the second branch ends: copy operand 1 of every phi, branch to 'join'.
 *      Without an 'else' the first branch ends here instead (copies of operand 0) and
 *      'other' holds just the copies of operand 1 (the path that skips the region).
 *      Continue in 'join'.
 *   4. 'phi': nothing; both edges into the join filled its buffer.
 *   5. 'ret': copy the result to out; count the call, its tokens and the layers of
 *      its path (tokens x the ret's 'layers', or x all the model's layers); return
 *      ELIDE_OK.  The ops that follow (the end of a branch) go into a fresh block
 *      that no edge reaches, which LLVM deletes.
 * The arena plan (plan.c) keeps this valid: see its header. */
#include "codegen/codegen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
cg_bump_counter(Cg *g, uint64_t off, LLVMValueRef by)
{
	LLVMValueRef p = cg_gepb(g, g->ctx, (int64_t)off);
	cg_store(g, LLVMBuildAdd(g->b, cg_load(g, g->i64, p, 8), by, ""), p, 8);
}

LLVMValueRef
cg_knob_value(Cg *g, const Op *op)
{
	LLVMValueRef p = cg_gepb(g, g->ctx, (int64_t)(g->r->knob_off + 8 * (uint64_t)op->ia[0]));
	LLVMValueRef v = cg_load(g, LLVMDoubleTypeInContext(g->c), p, 8);
	if (g->f->vals[op->dst].type.dtype == DT_F32)
		return LLVMBuildFPTrunc(g->b, v, g->f32, "");
	return LLVMBuildFPToSI(g->b, v, g->i32, ""); /* set_knob admits only integers in range */
}

/* Bytes of value v (its rows at run time). */
static LLVMValueRef
value_bytes(Cg *g, Type t)
{
	return LLVMBuildNSWMul(g->b, cg_rows(g, t), cg_i64(g, cg_cols(t) * (int64_t)ir_dtype_size(t.dtype)), "");
}

/* Copies the value src into the buffer at dst (a scalar through a register). */
static void
copy_value(Cg *g, LLVMValueRef dst, ValueId src)
{
	Type t = g->f->vals[src].type;
	if (t.rank == 0) {
		cg_store(g, cg_val_scalar(g, src), dst, 4);
		return;
	}
	LLVMBuildMemCpy(g->b, dst, 4, cg_val_ptr(g, src), 4, value_bytes(g, t));
}

/* The copies of operand `k` of the phis after 'end' op `end`, then the branch to join. */
static void
finish_branch(Cg *g, uint32_t end, int k, LLVMBasicBlockRef join)
{
	const Func *f = g->f;
	for (uint32_t i = end + 1; i < f->nops && f->ops[i].code == OP_PHI; i++)
		copy_value(g, cg_val_ptr(g, f->ops[i].dst), f->ops[i].args[k]);
	LLVMBuildBr(g->b, join);
}

static void
lower_if(Cg *g, uint32_t opi)
{
	const Op *op = &g->f->ops[opi];
	CgBranch *br = &g->branches[g->nbranches++];
	br->open = opi;
	LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(g->c, g->fn, "then");
	br->other = LLVMAppendBasicBlockInContext(g->c, g->fn, "other");
	br->join = LLVMAppendBasicBlockInContext(g->c, g->fn, "join");
	LLVMValueRef c = LLVMBuildICmp(g->b, LLVMIntNE, cg_val_scalar(g, op->args[0]), cg_i32c(g, 0), "cond");
	LLVMBuildCondBr(g->b, c, then, br->other);
	LLVMPositionBuilderAtEnd(g->b, then);
}

static void
lower_else(Cg *g, uint32_t opi)
{
	if (!g->nbranches)
		ELIDE_ICE("else without an open region");
	CgBranch *br = &g->branches[g->nbranches - 1];
	finish_branch(g, g->partner[opi], 0, br->join);
	LLVMPositionBuilderAtEnd(g->b, br->other);
}

static void
lower_end(Cg *g, uint32_t opi)
{
	if (!g->nbranches)
		ELIDE_ICE("end without an open region");
	CgBranch *br = &g->branches[--g->nbranches];
	bool has_else = g->partner[br->open] != opi;
	if (!has_else) {
		finish_branch(g, opi, 0, br->join);
		LLVMPositionBuilderAtEnd(g->b, br->other);
	}
	finish_branch(g, opi, 1, br->join);
	LLVMPositionBuilderAtEnd(g->b, br->join);
}

static void
lower_ret(Cg *g, uint32_t opi)
{
	const Func *f = g->f;
	const Op *op = &f->ops[opi];
	if (op->nargs)
		copy_value(g, g->out, op->args[0]);
	int64_t layers = op->ia[0] > 0 ? op->ia[0] : g->m->nlayers;
	cg_bump_counter(g, CG_CTX_STATS + 0, cg_i64(g, 1));
	cg_bump_counter(g, CG_CTX_STATS + 8, g->nrows);
	cg_bump_counter(g, CG_CTX_STATS + 16, LLVMBuildMul(g->b, g->nrows, cg_i64(g, layers), ""));
	cg_release_busy(g);
	LLVMBuildRet(g->b, cg_i32c(g, ELIDE_OK));
	LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->c, g->fn, "after.ret"));
}

/* select(c, a, b): the chosen operand copied into the result's buffer. */
static void
lower_select(Cg *g, const Op *op)
{
	Type t = g->f->vals[op->dst].type;
	LLVMValueRef c = LLVMBuildICmp(g->b, LLVMIntNE, cg_val_scalar(g, op->args[0]), cg_i32c(g, 0), "");
	LLVMValueRef dst = cg_val_ptr(g, op->dst);
	if (t.rank == 0) {
		cg_store(g, LLVMBuildSelect(g->b, c, cg_val_scalar(g, op->args[1]), cg_val_scalar(g, op->args[2]), ""),
		         dst, 4);
		return;
	}
	LLVMValueRef src = LLVMBuildSelect(g->b, c, cg_val_ptr(g, op->args[1]), cg_val_ptr(g, op->args[2]), "");
	LLVMBuildMemCpy(g->b, dst, 4, src, 4, value_bytes(g, t));
}

/* knob_set: the knob's slot takes the value (f32 or i32 scalar) clamped to the knob's
 * range, as the interpreter does; it persists in the context for later calls. */
static void
lower_knob_set(Cg *g, const Op *op)
{
	const Knob *k = &g->m->knobs[op->ia[0]];
	LLVMTypeRef dt = LLVMDoubleTypeInContext(g->c);
	LLVMValueRef v = cg_val_scalar(g, op->args[0]);
	v = g->f->vals[op->args[0]].type.dtype == DT_F32 ? LLVMBuildFPExt(g->b, v, dt, "") : LLVMBuildSIToFP(g->b, v, dt, "");
	LLVMValueRef lo = LLVMConstReal(dt, k->lo), hi = LLVMConstReal(dt, k->hi);
	v = LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOLT, v, lo, ""), lo, v, "");
	v = LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, v, hi, ""), hi, v, "");
	cg_store(g, v, cg_gepb(g, g->ctx, (int64_t)(g->r->knob_off + 8 * (uint64_t)op->ia[0])), 8);
}

/* if-chains rather than a switch over every opcode: this file handles a few. */
void
cg_lower_control(Cg *g, uint32_t opi)
{
	const Op *op = &g->f->ops[opi];
	Opcode c = op->code;
	if (c == OP_IF)
		lower_if(g, opi);
	else if (c == OP_ELSE)
		lower_else(g, opi);
	else if (c == OP_END)
		lower_end(g, opi);
	else if (c == OP_RET)
		lower_ret(g, opi);
	else if (c == OP_SELECT)
		lower_select(g, op);
	else if (c == OP_KNOB_SET)
		lower_knob_set(g, op);
	else if (c == OP_STAT) /* the amount, once per call that runs it */
		cg_bump_counter(g, g->r->stat_off + 8 * (uint64_t)op->ia[0], cg_i64(g, op->ia[1]));
	else if (c != OP_PHI) /* a phi's buffer was filled at the end of each branch */
		ELIDE_ICE("not a control-flow op");
}
