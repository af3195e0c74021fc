/* prune_groups.c - finds what structured pruning can cut in one function.
 *   1. FFN blocks: for every linear D whose weight is a param W_D[N, F], walk back
 *      from its input through elementwise ops (add, sub, mul, scale, silu, gelu,
 *      tanh) of the same layer; every path must end in a linear whose weight is a
 *      param [F, K] (a producer), a bias param [F] or a constant.  Every value on the
 *      way must be used only inside the block.  The producer that feeds an
 *      activation is the gate, the other the up projection.
 *   2. Attention blocks: for every attention op, walk back from q, k and v through
 *      rope and bias adds to their linears (params), and find the single linear
 *      (wo) that consumes the attention output.
 *   3. Layer boundaries: the one non-leaf value entering each layer region and the
 *      one value leaving it (the residual stream), used to score and remove layers.
 *   4. Residual blocks of each clean layer: from the layer's input, follow the
 *      stream through the adds of the layer; the other operand of each add, with
 *      every op of the layer it is computed from (stopping at the stream value), is
 *      a block when none of those values is used outside it and it ends in a linear
 *      (attention when it holds an attention op, FFN otherwise).
 * Nothing is changed here except f's use lists. */
#include "passes/prune.h"

#include <stdlib.h>
#include <string.h>

int32_t
prune_linear_param(const Func *f, const Op *op)
{
	if (op->code != OP_LINEAR || op->nargs != 2 || op->args[1] >= f->nvals)
		return -1;
	const Op *w = &f->ops[f->vals[op->args[1]].def];
	return w->code == OP_PARAM ? (int32_t)w->ia[0] : -1;
}

static int64_t
lastdim(Type t)
{
	return t.rank ? t.dims[t.rank - 1] : 1;
}

static uint32_t
def_of(const Func *f, ValueId v)
{
	return f->vals[v].def;
}

/* An activation: an elementwise op of one operand other than a scaling. */
static bool
is_activation(Opcode c)
{
	return ir_op_is_unary_elemwise(c) && c != OP_SCALE;
}

/* Step 1 for consumer op index di.  Returns false when the block does not fit. */
static bool
find_ffn(Module *m, Func *f, uint32_t di, PruneFfn *out)
{
	Op *d = &f->ops[di];
	int32_t wd = prune_linear_param(f, d);
	if (wd < 0 || d->layer < 0 || m->params[wd].type.rank != 2)
		return false;
	int64_t F = m->params[wd].type.dims[1];
	PruneFfn g = { .layer = d->layer, .down_op = di, .down = wd, .gate = -1, .up = -1, .width = F };
	g.mid_op = def_of(f, d->args[0]);
	g.in_op = UINT32_MAX;
	bool *seen = xcalloc(f->nops, 1);
	uint32_t *stack = xmalloc(f->nops * sizeof *stack), nstack = 0;
	uint32_t *body = xmalloc(f->nops * sizeof *body), nbody = 0; /* elementwise ops of the block */
	bool ok = true;
	stack[nstack++] = g.mid_op;
	seen[g.mid_op] = true;
	while (ok && nstack) {
		uint32_t oi = stack[--nstack];
		Op *o = &f->ops[oi];
		Type t = f->vals[o->dst].type;
		if (o->layer != d->layer || t.dtype != DT_F32 || lastdim(t) != F) {
			ok = false;
			break;
		}
		int32_t p = prune_linear_param(f, o);
		if (p >= 0) {
			const Type *pt = &m->params[p].type;
			if (pt->rank != 2 || pt->dims[0] != F || g.nrows == 4) {
				ok = false;
				break;
			}
			g.rows[g.nrows++] = p;
			uint32_t in = def_of(f, o->args[0]);
			if (g.in_op == UINT32_MAX)
				g.in_op = in;
			body[nbody++] = oi;
			continue;
		}
		if (!(ir_op_flags[o->code] & OPF_ELEMWISE)) {
			ok = false;
			break;
		}
		body[nbody++] = oi;
		for (uint32_t a = 0; a < o->nargs && ok; a++) {
			uint32_t ai = def_of(f, o->args[a]);
			Op *ao = &f->ops[ai];
			if (ao->code == OP_PARAM) {
				const Type *pt = &m->params[ao->ia[0]].type;
				if (pt->rank != 1 || pt->dims[0] != F || g.nvecs == 4)
					ok = false;
				else
					g.vecs[g.nvecs++] = (int32_t)ao->ia[0];
			} else if (ao->code == OP_CONST) {
				Type ct = f->vals[ao->dst].type;
				if (ct.rank == 0)
					continue; /* a scalar splat keeps its type */
				if (lastdim(ct) != F || g.nconsts == 8)
					ok = false;
				else
					g.consts[g.nconsts++] = ai;
			} else if (!seen[ai]) {
				seen[ai] = true;
				stack[nstack++] = ai;
			}
		}
	}
	/* every value of the block is used by the block (or by D) only */
	for (uint32_t k = 0; ok && k < nbody; k++) {
		const Value *v = &f->vals[f->ops[body[k]].dst];
		for (uint32_t u = 0; u < v->nuses && ok; u++)
			ok = v->uses[u] == di || seen[v->uses[u]];
	}
	for (uint32_t k = 0; ok && k < g.nconsts; k++) {
		const Value *v = &f->vals[f->ops[g.consts[k]].dst];
		for (uint32_t u = 0; u < v->nuses && ok; u++)
			ok = seen[v->uses[u]];
	}
	ok = ok && g.nrows > 0;
	if (ok) {
		/* the gate is the producer whose value feeds an activation */
		for (uint32_t k = 0; k < nbody; k++) {
			Op *o = &f->ops[body[k]];
			int32_t p = prune_linear_param(f, o);
			if (p < 0)
				continue;
			const Value *v = &f->vals[o->dst];
			bool act = false;
			for (uint32_t u = 0; u < v->nuses; u++)
				act |= is_activation(f->ops[v->uses[u]].code);
			if (act && g.gate < 0)
				g.gate = p;
			else if (g.up < 0)
				g.up = p;
		}
		if (g.up < 0) { /* only a gate: treat it as the up projection */
			g.up = g.gate;
			g.gate = -1;
		}
		*out = g;
	}
	free(seen);
	free(stack);
	free(body);
	return ok;
}

/* Walks back from value v through rope and bias adds to a linear with a param
 * weight; records the rope and the bias. */
static int32_t
attn_input(Module *m, Func *f, ValueId v, int32_t layer, uint32_t *rope, int32_t *bias)
{
	*rope = UINT32_MAX;
	*bias = -1;
	for (int steps = 0; steps < 4; steps++) {
		Op *o = &f->ops[def_of(f, v)];
		if (o->layer != layer || f->vals[v].nuses != 1)
			return -1;
		int32_t p = prune_linear_param(f, o);
		if (p >= 0)
			return m->params[p].type.rank == 2 ? p : -1;
		if (o->code == OP_ROPE && *rope == UINT32_MAX) {
			*rope = def_of(f, v);
			v = o->args[0];
		} else if (o->code == OP_ADD && *bias < 0) {
			Op *b = &f->ops[def_of(f, o->args[1])];
			if (b->code != OP_PARAM || m->params[b->ia[0]].type.rank != 1)
				return -1;
			*bias = (int32_t)b->ia[0];
			v = o->args[0];
		} else {
			return -1;
		}
	}
	return -1;
}

/* Step 2 for the attention op ai. */
static bool
find_attn(Module *m, Func *f, uint32_t ai, PruneAttn *out)
{
	Op *a = &f->ops[ai];
	PruneAttn g = { .layer = a->layer, .attn_op = ai, .heads = a->ia[0], .kv_heads = a->ia[1] };
	uint32_t rope_v;
	if (a->layer < 0 || g.heads <= 0 || g.kv_heads <= 0 || g.heads % g.kv_heads != 0)
		return false;
	g.wq = attn_input(m, f, a->args[0], a->layer, &g.rope_q, &g.bq);
	g.wk = attn_input(m, f, a->args[1], a->layer, &g.rope_k, &g.bk);
	g.wv = attn_input(m, f, a->args[2], a->layer, &rope_v, &g.bv);
	if (g.wq < 0 || g.wk < 0 || g.wv < 0 || rope_v != UINT32_MAX)
		return false;
	const Value *av = &f->vals[a->dst];
	if (av->nuses != 1)
		return false;
	Op *o = &f->ops[av->uses[0]];
	g.wo = prune_linear_param(f, o);
	if (g.wo < 0 || o->args[0] != a->dst || o->layer != a->layer)
		return false;
	int64_t qw = m->params[g.wq].type.dims[0];
	g.head_dim = qw / g.heads;
	if (g.head_dim * g.heads != qw || m->params[g.wk].type.dims[0] != g.kv_heads * g.head_dim
	    || m->params[g.wv].type.dims[0] != g.kv_heads * g.head_dim || m->params[g.wo].type.dims[1] != qw)
		return false;
	/* the q, k and v linears share their input */
	uint32_t lq = def_of(f, g.rope_q != UINT32_MAX ? f->ops[g.rope_q].args[0] : a->args[0]);
	while (f->ops[lq].code != OP_LINEAR)
		lq = def_of(f, f->ops[lq].args[0]);
	g.in_op = def_of(f, f->ops[lq].args[0]);
	*out = g;
	return true;
}

/* Step 3: the residual values entering and leaving each layer region. */
static void
find_boundaries(const Func *f, PruneGroups *g)
{
	for (int32_t l = 0; l < g->nlayers; l++) {
		ValueId in = IR_NO_VALUE, out = IR_NO_VALUE;
		bool in_ok = true, out_ok = true, any = false;
		for (uint32_t i = 0; i < f->nops; i++) {
			const Op *o = &f->ops[i];
			if (o->layer != l)
				continue;
			any = true;
			for (uint32_t a = 0; a < o->nargs; a++) {
				const Op *src = &f->ops[def_of(f, o->args[a])];
				if (src->layer == l || (ir_op_flags[src->code] & OPF_LEAF))
					continue;
				if (in != IR_NO_VALUE && in != o->args[a])
					in_ok = false;
				in = o->args[a];
			}
			const Value *v = &f->vals[o->dst];
			for (uint32_t u = 0; u < v->nuses; u++)
				if (f->ops[v->uses[u]].layer != l) {
					if (out != IR_NO_VALUE && out != o->dst)
						out_ok = false;
					out = o->dst;
				}
		}
		bool same = any && in != IR_NO_VALUE && out != IR_NO_VALUE
		            && ir_type_eq(f->vals[in].type, f->vals[out].type);
		g->layer_in[l] = same && in_ok && out_ok ? in : IR_NO_VALUE;
		g->layer_out[l] = same && in_ok && out_ok ? out : IR_NO_VALUE;
	}
}

/* Step 4 for the add op ai of layer l taking the stream value v: the block that
 * computes its other operand, or false. */
static bool
find_block(const Func *f, int32_t l, ValueId v, uint32_t ai, PruneBlock *out)
{
	const Op *add = &f->ops[ai];
	ValueId w = add->args[0] == v ? add->args[1] : add->args[0];
	uint32_t wi = def_of(f, w);
	if (w == v || f->ops[wi].code != OP_LINEAR || f->ops[wi].layer != l)
		return false;
	bool *in = xcalloc(f->nops, 1);
	uint32_t *stack = xmalloc(f->nops * sizeof *stack), nstack = 0;
	PruneBlock b = { .layer = l, .kind = PB_FFN, .in = v, .out = add->dst, .wout_op = wi, .state = -1 };
	b.ops = xmalloc((f->nops + 1) * sizeof *b.ops);
	in[wi] = true;
	stack[nstack++] = wi;
	uint32_t nattn = 0;
	while (nstack) {
		uint32_t oi = stack[--nstack];
		const Op *o = &f->ops[oi];
		b.ops[b.nops++] = oi;
		if (o->code == OP_ATTENTION) {
			nattn++;
			b.kind = PB_ATTN;
			b.state = (int32_t)o->ia[2];
		}
		for (uint32_t a = 0; a < o->nargs; a++) {
			uint32_t di = def_of(f, o->args[a]);
			if (o->args[a] != v && f->ops[di].layer == l && !in[di]) {
				in[di] = true;
				stack[nstack++] = di;
			}
		}
	}
	bool ok = nattn <= 1;
	for (uint32_t k = 0; k < b.nops && ok; k++) {
		const Value *val = &f->vals[f->ops[b.ops[k]].dst];
		for (uint32_t u = 0; u < val->nuses && ok; u++)
			ok = val->uses[u] == ai || in[val->uses[u]];
	}
	b.ops[b.nops++] = ai;
	free(in);
	free(stack);
	if (!ok) {
		free(b.ops);
		return false;
	}
	*out = b;
	return true;
}

/* Step 4 for layer l: walks the stream from the layer's input to its output. */
static void
find_layer_blocks(const Func *f, int32_t l, ValueId v, ValueId end, PruneGroups *g, uint32_t *cap)
{
	for (uint32_t steps = 0; v != end && steps < f->nops; steps++) {
		const Value *val = &f->vals[v];
		PruneBlock b;
		bool found = false;
		for (uint32_t u = 0; u < val->nuses && !found; u++) {
			uint32_t ui = val->uses[u];
			const Op *o = &f->ops[ui];
			if (o->code == OP_ADD && o->layer == l && o->nargs == 2 && (o->args[0] == v || o->args[1] == v))
				found = find_block(f, l, v, ui, &b);
		}
		if (!found)
			return;
		VEC_PUSH(g->blocks, g->nblocks, *cap);
		g->blocks[g->nblocks++] = b;
		v = b.out;
	}
}

const PruneBlock *
prune_find_block(const PruneGroups *g, int32_t l, PruneBlockKind k)
{
	for (uint32_t i = 0; i < g->nblocks; i++)
		if (g->blocks[i].layer == l && g->blocks[i].kind == k)
			return &g->blocks[i];
	return NULL;
}

void
prune_find_groups(Module *m, Func *f, PruneGroups *g)
{
	memset(g, 0, sizeof *g);
	ir_compute_uses(m, f);
	g->nlayers = m->nlayers;
	g->layer_in = xmalloc(((size_t)m->nlayers + 1) * sizeof *g->layer_in);
	g->layer_out = xmalloc(((size_t)m->nlayers + 1) * sizeof *g->layer_out);
	uint32_t capf = 0, capa = 0;
	for (uint32_t i = 0; i < f->nops; i++) {
		Op *o = &f->ops[i];
		if (o->code == OP_LINEAR) {
			PruneFfn ffn;
			if (find_ffn(m, f, i, &ffn)) {
				VEC_PUSH(g->ffn, g->nffn, capf);
				g->ffn[g->nffn++] = ffn;
			}
		} else if (o->code == OP_ATTENTION) {
			PruneAttn at;
			if (find_attn(m, f, i, &at)) {
				VEC_PUSH(g->attn, g->nattn, capa);
				g->attn[g->nattn++] = at;
			}
		}
	}
	find_boundaries(f, g);
	uint32_t capb = 0;
	for (int32_t l = 0; l < g->nlayers; l++)
		if (g->layer_in[l] != IR_NO_VALUE)
			find_layer_blocks(f, l, g->layer_in[l], g->layer_out[l], g, &capb);
}

void
prune_groups_free(PruneGroups *g)
{
	free(g->ffn);
	free(g->attn);
	for (uint32_t i = 0; i < g->nblocks; i++)
		free(g->blocks[i].ops);
	free(g->blocks);
	free(g->layer_in);
	free(g->layer_out);
	memset(g, 0, sizeof *g);
}
