/* cost.c - the manifest's figures: FLOPs and weight bytes read per token of every
 * path through an entry that ends in a 'ret' (the full path and each exit site's),
 * and of each layer region on the full path.
 * Algorithm, for each 'ret' op r of an entry:
 *   1. walk the ops from the first to r; at an 'if' whose region holds r, enter the
 *      branch that holds r (the other branch is not on the path; the path's exit
 *      site is ia[0] of the innermost such 'if' that has one);
 *   2. a region closed before r counts as its costlier branch, by weight bytes and
 *      then FLOPs, among the branches that do not end in a 'ret' (a branch that
 *      returns leaves the path); regions inside it the same way, recursively;
 *   3. op costs: linear 2 N K FLOPs and N K elements of W[N, K] at the bytes of its
 *      param's storage format (f32 4, bf16 2, q8 1, q4 0.5, plus the f16 scales of
 *      q8/q4); embed one row of its
 *      table; elementwise ops one FLOP per element of a row; the softmax measures 4
 *      and cosine 6 FLOPs per element of a row; attention, per head of size hd, hd
 *      for the normalisation plus, per key attended, q.k (2 hd), scale, max, exp and
 *      sum (4, exp counted as one) and the weighted sum of v (2 hd): the figures are
 *      at one key, flops_per_key is added for each further one (the sparse forms
 *      count per key they attend to), and a cached attention reads a key and a value
 *      row per kv head and key (kv_bytes_per_key); everything else nothing.
 * The entry's figures are its full path's, the one ending in its last 'ret'. */
#include "codegen/codegen.h"

#include <stdlib.h>

typedef struct Cost {
	double flops, bytes;
	double per_key;           /* FLOPs added for each further key attended */
	double kv_per_key;        /* KV cache bytes read per key attended */
} Cost;

/* Bytes per element of weight value v: its param's format, scales included. */
static double
weight_bytes(const Module *m, const Func *f, ValueId v)
{
	const Op *d = &f->ops[f->vals[v].def];
	if (d->code != OP_PARAM)
		return 4.0;
	const Param *p = &m->params[d->ia[0]];
	double b = ir_qformat_bytes(p->format);
	return (p->format == QF_Q8 || p->format == QF_Q4) ? b + 2.0 / p->group : b;
}

static Cost
op_cost(const Module *m, const Func *f, const Op *op)
{
	Cost c = { 0, 0, 0, 0 };
	if (op->code == OP_LINEAR) {
		Type w = f->vals[op->args[1]].type;
		c.flops = 2.0 * (double)cg_static_rows(w) * (double)cg_cols(w);
		c.bytes = weight_bytes(m, f, op->args[1]) * (double)cg_static_rows(w) * (double)cg_cols(w);
	} else if (ir_op_is_attention(op->code)) {
		int64_t heads = op->ia[0], hd = cg_cols(f->vals[op->args[0]].type) / (heads ? heads : 1);
		c.per_key = (double)heads * (4.0 * (double)hd + 4.0);
		c.flops = c.per_key + (double)heads * (double)hd;
		if (op->ia[2] >= 0) /* a key and a value row of the cache per kv head */
			c.kv_per_key = 2.0 * (double)op->ia[1] * (double)hd * 4.0;
	} else if (op->code == OP_EMBED) {
		c.bytes = weight_bytes(m, f, op->args[0]) * (double)cg_cols(f->vals[op->args[0]].type);
	} else if (op->code == OP_MARGIN || op->code == OP_MAXPROB || op->code == OP_ENTROPY) {
		c.flops = 4.0 * (double)cg_cols(f->vals[op->args[0]].type);
	} else if (op->code == OP_COSINE) {
		c.flops = 6.0 * (double)cg_cols(f->vals[op->args[0]].type);
	} else if (ir_op_flags[op->code] & OPF_ELEMWISE) {
		c.flops = (double)cg_cols(f->vals[op->dst].type);
	}
	return c;
}

static void
add(Cost *a, Cost b)
{
	a->flops += b.flops;
	a->bytes += b.bytes;
	a->per_key += b.per_key;
	a->kv_per_key += b.kv_per_key;
}

/* The 'end' of the region opened by 'if' op i, and the first op of its second branch
 * (the 'end' itself when there is no 'else'). */
static uint32_t
region_end(const Func *f, const uint32_t *partner, uint32_t i, uint32_t *second)
{
	uint32_t mid = partner[i];
	bool has_else = f->ops[mid].code == OP_ELSE;
	*second = has_else ? mid + 1 : mid;
	return has_else ? partner[mid] : mid;
}

/* The cost of ops [a, b) at one nesting level, closed regions as their costlier
 * branch; marks the ops counted in on (may be NULL). */
static Cost
range_cost(const Module *m, const Func *f, const uint32_t *partner, uint32_t a, uint32_t b, bool *on)
{
	Cost c = { 0, 0, 0, 0 };
	for (uint32_t i = a; i < b;) {
		if (f->ops[i].code != OP_IF) {
			add(&c, op_cost(m, f, &f->ops[i]));
			if (on)
				on[i] = true;
			i++;
			continue;
		}
		uint32_t second, end = region_end(f, partner, i, &second);
		uint32_t lo[2] = { i + 1, second }, hi[2] = { second == end ? end : second - 1, end };
		int best = -1;
		Cost bc = { 0, 0, 0, 0 };
		for (int k = 0; k < 2; k++) {
			if (hi[k] > lo[k] && f->ops[hi[k] - 1].code == OP_RET)
				continue; /* this branch returns */
			Cost bk = range_cost(m, f, partner, lo[k], hi[k], NULL);
			if (best < 0 || bk.bytes > bc.bytes || (bk.bytes == bc.bytes && bk.flops > bc.flops)) {
				best = k;
				bc = bk;
			}
		}
		if (best >= 0)
			add(&c, range_cost(m, f, partner, lo[best], hi[best], on));
		if (on)
			on[i] = on[end] = true;
		i = end + 1;
	}
	return c;
}

/* The path from the first op to 'ret' op r (steps 1 and 2). */
static Cost
path_cost(const Module *m, const Func *f, const uint32_t *partner, uint32_t r, bool *on, int32_t *site)
{
	Cost c = { 0, 0, 0, 0 };
	*site = 0;
	for (uint32_t i = 0; i <= r && i < f->nops;) {
		const Op *op = &f->ops[i];
		if (op->code == OP_IF) {
			uint32_t second, end = region_end(f, partner, i, &second);
			if (r > i && r < end) { /* the region holds r: enter its branch */
				if (op->ia[0] > 0)
					*site = (int32_t)op->ia[0];
				on[i] = true;
				i = r < second ? i + 1 : second;
				continue;
			}
			add(&c, range_cost(m, f, partner, i, end + 1, on));
			i = end + 1;
			continue;
		}
		add(&c, op_cost(m, f, op));
		on[i] = true;
		i++;
	}
	return c;
}

void
cg_compute_costs(CgResult *r)
{
	const Module *m = r->m;
	for (uint32_t e = 0; e < m->nfuncs && e < r->nentries; e++) {
		const Func *f = m->funcs[e];
		CgEntry *ce = &r->entries[e];
		uint32_t *partner = xmalloc((f->nops + 1) * sizeof *partner);
		bool *on = xcalloc(f->nops + 1, sizeof *on);
		if (!ir_match_regions(f, partner, NULL, 0, NULL))
			ELIDE_ICE("regions do not nest in a verified entry");
		ce->nlayers = (uint32_t)m->nlayers + 1;
		ce->layers = xcalloc(ce->nlayers, sizeof *ce->layers);
		for (uint32_t l = 0; l < ce->nlayers; l++)
			ce->layers[l].layer = (int32_t)l - 1;
		ce->npaths = 0;
		for (uint32_t i = 0; i < f->nops; i++)
			ce->npaths += f->ops[i].code == OP_RET;
		ce->paths = xcalloc(ce->npaths + 1, sizeof *ce->paths);
		uint32_t k = 0;
		for (uint32_t i = 0; i < f->nops; i++) {
			if (f->ops[i].code != OP_RET)
				continue;
			for (uint32_t j = 0; j < f->nops; j++)
				on[j] = false;
			CgPath *p = &ce->paths[k++];
			Cost c = path_cost(m, f, partner, i, on, &p->site);
			p->ret = i;
			p->layers = f->ops[i].ia[0] > 0 ? f->ops[i].ia[0] : m->nlayers;
			p->flops = c.flops;
			p->bytes = c.bytes;
			p->flops_per_key = c.per_key;
			p->kv_bytes_per_key = c.kv_per_key;
			if (k < ce->npaths)
				continue;
			/* the last 'ret': the full path, per layer region too */
			ce->flops = c.flops;
			ce->bytes = c.bytes;
			ce->flops_per_key = c.per_key;
			ce->kv_bytes_per_key = c.kv_per_key;
			for (uint32_t j = 0; j < f->nops; j++) {
				if (!on[j])
					continue;
				const Op *op = &f->ops[j];
				Cost oc = op_cost(m, f, op);
				int32_t l = op->layer >= 0 && op->layer < m->nlayers ? op->layer + 1 : 0;
				ce->layers[l].flops += oc.flops;
				ce->layers[l].bytes += oc.bytes;
				ce->layers[l].flops_per_key += oc.per_key;
				ce->layers[l].kv_bytes_per_key += oc.kv_per_key;
				if (ir_op_is_attention(op->code))
					ce->layers[l].attn = op;
			}
		}
		free(partner);
		free(on);
	}
}
