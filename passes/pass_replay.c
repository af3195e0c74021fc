/* pass_replay.c - rebuilding an entry op by op with new ops in between: the one way
 * the passes that add control flow (early exit, layer skipping) write an entry.
 *   1. pass_replay_begin: an empty function beside the source entry, a value map and a
 *      Builder that emits into it;
 *   2. the pass copies the source's ops in order (pass_replay_op), and between them
 *      emits its own ops with the Builder: regions, measures, copies of a layer's ops
 *      on another input (pass_replay_slice), a helper fn inlined (pass_replay_inline),
 *      the rest of the entry on a subset of its layers (pass_replay_variant: a
 *      specialised straight-line variant, usually inside an 'if' that ends in its ret);
 *   3. pass_replay_end swaps the new op and value arrays into the entry (or drops them
 *      after an error).
 * Values keep their types; ops keep their attributes, layers and locations. */
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

void
pass_replay_begin(Replay *rp, Module *m, Func *src, Diag *d)
{
	memset(rp, 0, sizeof *rp);
	rp->m = m;
	rp->src = src;
	rp->g = (Func){ .name = src->name, .kind = src->kind, .args = src->args, .nargs = src->nargs,
	                .rets = src->rets, .nrets = src->nrets, .loc = src->loc };
	rp->map = xmalloc((src->nvals + 1) * sizeof *rp->map);
	for (uint32_t v = 0; v < src->nvals; v++)
		rp->map[v] = IR_NO_VALUE;
	rp->b = (Builder){ .m = m, .f = &rp->g, .layer = -1, .diag = d };
}

ValueId
pass_replay_copy(Replay *rp, const Func *from, const Op *op, const ValueId *args, int32_t layer)
{
	Type t = from->vals[op->dst].type;
	ValueId v = ir_emit(rp->m, &rp->g, op->code, t, args, op->nargs, op->loc);
	Op *n = ir_def(&rp->g, v);
	memcpy(n->ia, op->ia, sizeof n->ia);
	memcpy(n->fa, op->fa, sizeof n->fa);
	n->layer = layer;
	if (op->code == OP_ARG)
		rp->g.vals[v].name = from->vals[op->dst].name;
	return v;
}

ValueId
pass_replay_op(Replay *rp, uint32_t i)
{
	const Op *op = &rp->src->ops[i];
	ValueId args[IR_MAX_OPERANDS];
	for (uint32_t a = 0; a < op->nargs; a++)
		args[a] = rp->map[op->args[a]];
	return rp->map[op->dst] = pass_replay_copy(rp, rp->src, op, args, op->layer);
}

ValueId
pass_replay_inline(Replay *rp, const Func *fn, const ValueId *args)
{
	ValueId *map = xmalloc((fn->nvals + 1) * sizeof *map), out = IR_NO_VALUE;
	for (uint32_t i = 0; i < fn->nops; i++) {
		const Op *op = &fn->ops[i];
		if (op->code == OP_ARG) {
			map[op->dst] = op->ia[0] >= 0 && op->ia[0] < fn->nargs ? args[op->ia[0]] : IR_NO_VALUE;
			continue;
		}
		if (op->code == OP_RET) {
			out = op->nargs ? map[op->args[0]] : IR_NO_VALUE;
			break;
		}
		ValueId a[IR_MAX_OPERANDS];
		for (uint32_t k = 0; k < op->nargs; k++)
			a[k] = map[op->args[k]];
		map[op->dst] = pass_replay_copy(rp, fn, op, a, rp->b.layer);
	}
	free(map);
	return out;
}

ValueId
pass_replay_slice(Replay *rp, ValueId v, int32_t layer, ValueId in, ValueId h, ValueId *local)
{
	const Func *f = rp->src;
	if (local[v] != IR_NO_VALUE)
		return local[v];
	if (v == in)
		return local[v] = h;
	const Op *op = &f->ops[f->vals[v].def];
	bool leaf = ir_op_flags[op->code] & OPF_LEAF;
	if (op->layer != layer && !leaf)
		return IR_NO_VALUE; /* the layer reads another value of the stream: not a slice */
	if (op->layer != layer && rp->map[v] != IR_NO_VALUE)
		return local[v] = rp->map[v];
	ValueId args[IR_MAX_OPERANDS];
	for (uint32_t a = 0; a < op->nargs; a++)
		if ((args[a] = pass_replay_slice(rp, op->args[a], layer, in, h, local)) == IR_NO_VALUE)
			return IR_NO_VALUE;
	return local[v] = pass_replay_copy(rp, f, op, args, op->layer);
}

ValueId
pass_replay_variant(Replay *rp, const PassLayers *ly, uint32_t from, const bool *run, bool keep_map)
{
	const Func *f = rp->src;
	ValueId *saved = NULL, r = IR_NO_VALUE;
	if (!keep_map) {
		saved = xmalloc((f->nvals + 1) * sizeof *saved);
		memcpy(saved, rp->map, f->nvals * sizeof *saved);
	}
	int64_t nrun = 0;
	for (int32_t l = 0; l < ly->nlayers; l++)
		nrun += run[l];
	for (uint32_t i = from; i < f->nops; i++) {
		const Op *op = &f->ops[i];
		int32_t l = op->layer;
		if (l >= 0 && l < ly->nlayers && !run[l]) {
			if (ly->layer_out[l] != IR_NO_VALUE && ly->layer_in[l] != IR_NO_VALUE)
				rp->map[ly->layer_out[l]] = rp->map[ly->layer_in[l]];
			continue;
		}
		ValueId v = pass_replay_op(rp, i);
		if (op->code == OP_RET) {
			ir_def(&rp->g, v)->ia[0] = nrun == ly->nlayers ? 0 : nrun;
			r = v;
			break;
		}
	}
	if (saved) {
		memcpy(rp->map, saved, f->nvals * sizeof *saved);
		free(saved);
	}
	return r;
}

ValueId
pass_replay_knob(Replay *rp, int32_t knob, Loc loc)
{
	int64_t ia[IR_NIA] = { knob };
	return ir_b_op(&rp->b, OP_KNOB, NULL, 0, ia, NULL, loc);
}

ValueId
pass_replay_op2(Replay *rp, Opcode c, ValueId a, ValueId b, int64_t ia0, Loc loc)
{
	ValueId args[2] = { a, b };
	int64_t ia[IR_NIA] = { ia0 };
	return ir_b_op(&rp->b, c, args, b == IR_NO_VALUE ? 1 : 2, ia, NULL, loc);
}

void
pass_replay_stat(Replay *rp, int32_t slot, int64_t amount, Loc loc)
{
	int64_t ia[IR_NIA] = { slot, amount };
	ir_b_op(&rp->b, OP_STAT, NULL, 0, ia, NULL, loc);
}

void
pass_replay_end(Replay *rp, bool commit)
{
	Func *f = rp->src;
	if (commit) {
		for (uint32_t v = 0; v < f->nvals; v++)
			free(f->vals[v].uses);
		free(f->ops);
		free(f->vals);
		f->ops = rp->g.ops;
		f->vals = rp->g.vals;
		f->nops = rp->g.nops;
		f->capops = rp->g.capops;
		f->nvals = rp->g.nvals;
		f->capvals = rp->g.capvals;
	} else {
		free(rp->g.ops);
		free(rp->g.vals);
	}
	free(rp->map);
	memset(rp, 0, sizeof *rp);
}
