/* sparse_attention.c - the `sparse-attention` pass: the policy's `attend` statements
 * become the sparse attention ops (docs/sparse.md).
 *   1. read the statements into one SparseSpec (read_attend: the only code that
 *      knows how `attend` options are stored);
 *   2. decode (`attend decode [quest(page P, budget B)] [sinks S] [window W]
 *      [dense_layers ...]`): every KV cache of a layer that is not dense keeps page
 *      bounds (State.page = P), and every `attention` op of a `step` entry in such a
 *      layer becomes `attention_quest` {budget B, sinks S, window W} whose fifth
 *      operand is the run-time budget (an i32 constant B placed just before it:
 *      the hook a run-time knob replaces);
 *   3. prefill (`attend prefill block_topk(block B, topk K)` or `coverage gamma G
 *      [block B]`, `[min_tokens N] [dense_layers ...]`): every `attention` op of a
 *      `prefill` entry in a layer that is not dense becomes `attention_block`;
 *   4. drop the realised statements from the policy and note in the manifest what
 *      changed.
 * Runs after drop-layers and prune-structured in the default pipeline (layer
 * indices are those of the module it sees). */
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

typedef struct SparseSpec {
	bool decode, prefill;        /* statements present */
	int64_t page, budget;        /* quest(page, budget); budget 0: sinks and window only */
	int64_t sinks, window;       /* tokens */
	const PolicyVal *decode_dense, *prefill_dense; /* dense_layers lists (NULL: none) */
	int64_t block, topk;         /* prefill blocks; topk 0: coverage */
	double gamma;                /* coverage target mass */
	int64_t min_tokens;          /* shorter prefills stay dense */
	Loc decode_loc, prefill_loc;
} SparseSpec;

enum { SPARSE_DEFAULT_PAGE = 16, SPARSE_DEFAULT_BLOCK = 64 };

static const PolicyVal *
opt(const PolicyOpt *o, uint32_t n, const char *key)
{
	for (uint32_t i = 0; i < n; i++)
		if (strcmp(o[i].key, key) == 0)
			return &o[i].val;
	return NULL;
}

static int64_t
num(const PolicyOpt *o, uint32_t n, const char *key, int64_t dflt)
{
	const PolicyVal *v = opt(o, n, key);
	return v ? (int64_t)v->num : dflt;
}

/* Step 1: the `attend` statements of the policy (the last of each subject wins). */
static SparseSpec
read_attend(const Policy *p)
{
	SparseSpec s = { .page = SPARSE_DEFAULT_PAGE, .block = SPARSE_DEFAULT_BLOCK };
	for (uint32_t i = 0; p && i < p->nstmts; i++) {
		const PolicyStmt *st = &p->stmts[i];
		if (!st->verb || strcmp(st->verb, "attend") != 0 || !st->subject)
			continue;
		if (strcmp(st->subject, "decode") == 0) {
			const PolicyVal *q = opt(st->opts, st->nopts, "quest");
			s.decode = true;
			s.decode_loc = st->loc;
			s.page = q ? num(q->sub, q->nsub, "page", SPARSE_DEFAULT_PAGE) : SPARSE_DEFAULT_PAGE;
			s.budget = q ? num(q->sub, q->nsub, "budget", 0) : 0;
			s.sinks = num(st->opts, st->nopts, "sinks", 0);
			s.window = num(st->opts, st->nopts, "window", 0);
			s.decode_dense = opt(st->opts, st->nopts, "dense_layers");
		} else if (strcmp(st->subject, "prefill") == 0) {
			const PolicyVal *bt = opt(st->opts, st->nopts, "block_topk"), *cv = opt(st->opts, st->nopts, "coverage");
			s.prefill = true;
			s.prefill_loc = st->loc;
			s.block = bt ? num(bt->sub, bt->nsub, "block", SPARSE_DEFAULT_BLOCK)
			             : cv ? num(cv->sub, cv->nsub, "block", SPARSE_DEFAULT_BLOCK) : SPARSE_DEFAULT_BLOCK;
			s.topk = bt ? num(bt->sub, bt->nsub, "topk", 1) : 0;
			const PolicyVal *g = cv ? opt(cv->sub, cv->nsub, "gamma") : NULL;
			s.gamma = g ? g->num : 1.0;
			s.min_tokens = num(st->opts, st->nopts, "min_tokens", 0);
			s.prefill_dense = opt(st->opts, st->nopts, "dense_layers");
		}
	}
	return s;
}

static bool
listed(const PolicyVal *v, int32_t layer)
{
	for (uint32_t k = 0; v && k < v->nints; k++)
		if (v->ints[k] == layer)
			return true;
	return v && v->kind == PV_RANGE && layer >= v->lo && layer < v->hi;
}

/* Step 2 for one step entry: each converted attention gets a constant budget
 * operand right before it.  The ops are rebuilt in that order. */
static int
quest_func(Module *m, Func *f, const SparseSpec *s)
{
	uint32_t n0 = f->nops, nconv = 0;
	for (uint32_t i = 0; i < n0; i++) {
		Op *op = &f->ops[i];
		if (op->code != OP_ATTENTION || op->ia[2] < 0 || op->layer < 0 || listed(s->decode_dense, op->layer))
			continue;
		ValueId b = ir_emit(m, f, OP_CONST, ir_type_scalar(DT_I32), NULL, 0, op->loc);
		Op *c = ir_def(f, b);
		op = &f->ops[i];         /* ir_emit may move the array */
		c->ia[0] = s->budget;
		c->layer = op->layer;
		op->code = OP_ATTENTION_QUEST;
		op->args[op->nargs++] = b;
		op->ia[3] = s->budget;
		op->ia[4] = s->sinks;
		op->ia[5] = s->window;
		nconv++;
	}
	if (!nconv)
		return 0;
	/* order: every appended constant just before the op that uses it */
	Op *ops = xmalloc((f->nops + 1) * sizeof *ops);
	uint32_t n = 0;
	for (uint32_t i = 0; i < n0; i++) {
		const Op *op = &f->ops[i];
		if (op->code == OP_ATTENTION_QUEST && op->nargs == 5 && f->vals[op->args[4]].def >= n0)
			ops[n++] = f->ops[f->vals[op->args[4]].def];
		ops[n++] = *op;
	}
	memcpy(f->ops, ops, n * sizeof *ops);
	free(ops);
	for (uint32_t i = 0; i < n; i++)
		f->vals[f->ops[i].dst].def = i;
	pass_rebuild_func(m, f, NULL, NULL);
	return (int)nconv;
}

/* Removes the realised `attend` statements. */
static void
drop_attend(Module *m, bool decode, bool prefill)
{
	Policy *p = m->policy;
	uint32_t n = 0;
	for (uint32_t i = 0; p && i < p->nstmts; i++) {
		const PolicyStmt *st = &p->stmts[i];
		bool realised = st->verb && strcmp(st->verb, "attend") == 0 && st->subject &&
		                ((decode && strcmp(st->subject, "decode") == 0) || (prefill && strcmp(st->subject, "prefill") == 0));
		if (!realised)
			p->stmts[n++] = *st;
	}
	if (p)
		p->nstmts = n;
}

static bool
run(Module *m, bool decode, bool prefill)
{
	SparseSpec s = read_attend(m->policy);
	s.decode &= decode;
	s.prefill &= prefill;
	if (!s.decode && !s.prefill)
		return true;
	int nquest = 0, nblock = 0;
	if (s.decode) {
		for (uint32_t i = 0; i < m->nstates; i++)
			if (m->states[i].layer >= 0 && !listed(s.decode_dense, m->states[i].layer))
				m->states[i].page = s.page;
		for (uint32_t e = 0; e < m->nfuncs; e++)
			if (m->funcs[e]->kind == FN_STEP)
				nquest += quest_func(m, m->funcs[e], &s);
	}
	if (s.prefill)
		for (uint32_t e = 0; e < m->nfuncs; e++) {
			Func *f = m->funcs[e];
			if (f->kind != FN_PREFILL)
				continue;
			for (uint32_t i = 0; i < f->nops; i++) {
				Op *op = &f->ops[i];
				if (op->code != OP_ATTENTION || op->ia[2] < 0 || op->layer < 0 ||
				    listed(s.prefill_dense, op->layer))
					continue;
				op->code = OP_ATTENTION_BLOCK;
				op->ia[3] = s.block;
				op->ia[4] = s.topk;
				op->ia[5] = s.min_tokens;
				op->fa[0] = s.topk ? 0.0f : (float)s.gamma;
				nblock++;
			}
		}
	drop_attend(m, s.decode, s.prefill);
	char buf[512];
	if (s.decode) {
		snprintf(buf, sizeof buf,
		         "sparse attention, decode: %d attention ops attend to the pages Quest selects (page %lld, budget "
		         "%lld tokens, sinks %lld, window %lld)\n",
		         nquest, (long long)s.page, (long long)s.budget, (long long)s.sinks, (long long)s.window);
		pass_add_notes(m, buf);
	}
	if (s.prefill) {
		if (s.topk)
			snprintf(buf, sizeof buf,
			         "sparse attention, prefill: %d attention ops attend to the top %lld key blocks of %lld tokens "
			         "(min_tokens %lld)\n",
			         nblock, (long long)s.topk, (long long)s.block, (long long)s.min_tokens);
		else
			snprintf(buf, sizeof buf,
			         "sparse attention, prefill: %d attention ops attend to the key blocks of %lld tokens covering "
			         "%g of the estimated attention mass (min_tokens %lld)\n",
			         nblock, (long long)s.block, s.gamma, (long long)s.min_tokens);
		pass_add_notes(m, buf);
	}
	return true;
}

/* The default pipeline's pass: decode statements (the compiled code has no
 * block-sparse prefill yet; `attend prefill` stays unapplied there). */
bool
pass_sparse_attention(Module *m, Diag *d)
{
	(void)d;
	return run(m, true, false);
}

/* Both kinds of statement; attention_block runs in the interpreter only. */
bool
pass_sparse_prefill(Module *m, Diag *d)
{
	(void)d;
	return run(m, true, true);
}
