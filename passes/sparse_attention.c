/* sparse_attention.c - the `sparse-attention` pass: the policy's `attend` statements
 * become the sparse attention ops (docs/sparse.md).
 *   1. read the statements into one SparseSpec (read_attend: the only code that
 *      knows how `attend` options are stored);
 *   2. decode (`attend decode [quest(page P, budget B)] [sinks S] [window W]
 *      [dense_layers ...]`): every KV cache of a layer that is not dense keeps page
 *      bounds (State.page = P), and every `attention` op of a `step` entry in such a
 *      layer becomes `attention_quest` {budget B, sinks S, window W} whose fifth
 *      operand is the run-time budget: the i32 knob `attend.budget` (default B,
 *      settable in [0, B]; the op never attends more than B), read just before it;
 *   3. prefill (`attend prefill block_topk(block B, topk K)` or `coverage gamma G
 *      [block B]`, `[min_tokens N] [dense_layers ...]`): every `attention` op of a
 *      `prefill` entry in a layer that is not dense becomes `attention_block`;
 *   4. every converted op counts what it visits in the stat slot of its layer:
 *      `attend.decode.layerL` (pages, per row and kv head) and
 *      `attend.prefill.layerL` (key blocks, per row and kv head);
 *   5. drop the realised statements from the policy and note in the manifest what
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
	const PolicyLayers *decode_dense, *prefill_dense; /* dense_layers lists (NULL: none) */
	int64_t block, topk;         /* prefill blocks; topk 0: coverage */
	double gamma;                /* coverage target mass */
	int64_t min_tokens;          /* shorter prefills stay dense */
	Loc decode_loc, prefill_loc;
} SparseSpec;

enum { SPARSE_DEFAULT_PAGE = 16, SPARSE_DEFAULT_BLOCK = 64 };

/* Step 1: the `attend` statements of the policy (the last of each subject wins). */
static SparseSpec
read_attend(const Policy *p)
{
	SparseSpec s = { .page = SPARSE_DEFAULT_PAGE, .block = SPARSE_DEFAULT_BLOCK };
	for (uint32_t i = 0; p && i < p->nstmts; i++) {
		const PolicyStmt *st = &p->stmts[i];
		if (st->verb != POL_ATTEND)
			continue;
		const PolicyAttend *a = &st->attend;
		const PolicyLayers *dense = ir_policy_given(st, PK_ATTEND_DENSE) ? &a->dense_layers : NULL;
		if (a->kind == AK_DECODE) {
			s.decode = true;
			s.decode_loc = st->loc;
			s.page = ir_policy_given(st, PK_ATTEND_PAGE) ? a->page : SPARSE_DEFAULT_PAGE;
			s.budget = ir_policy_given(st, PK_ATTEND_BUDGET) ? a->budget : 0;
			s.sinks = ir_policy_given(st, PK_ATTEND_SINKS) ? a->sinks : 0;
			s.window = ir_policy_given(st, PK_ATTEND_WINDOW) ? a->window : 0;
			s.decode_dense = dense;
		} else if (a->kind == AK_PREFILL) {
			bool topk = a->method == PM_BLOCK_TOPK;
			s.prefill = true;
			s.prefill_loc = st->loc;
			s.block = ir_policy_given(st, PK_ATTEND_BLOCK) ? a->block : SPARSE_DEFAULT_BLOCK;
			s.topk = topk ? (ir_policy_given(st, PK_ATTEND_TOPK) ? a->topk : 1) : 0;
			s.gamma = !topk && ir_policy_given(st, PK_ATTEND_GAMMA) ? a->gamma : 1.0;
			s.min_tokens = ir_policy_given(st, PK_ATTEND_MIN_TOKENS) ? a->min_tokens : 0;
			s.prefill_dense = dense;
		}
	}
	return s;
}

static bool
listed(const PolicyLayers *v, int32_t layer)
{
	return v && ir_policy_layers_has(v, layer);
}

/* Step 4: the stat slot that counts the visits of layer `layer`'s sparse attention. */
static int32_t
layer_stat(Module *m, const char *kind, int32_t layer, Loc loc)
{
	return pass_stat(m, arena_printf(&m->arena, "attend.%s.layer%d", kind, layer), loc);
}

/* Step 2 for one step entry: each converted attention gets its budget operand
 * right before it: the `attend.budget` knob (index knob), or the constant 0 when the
 * compiled budget is 0 (sinks and window only).  The ops are rebuilt in that order. */
static int
quest_func(Module *m, Func *f, const SparseSpec *s, int32_t knob)
{
	uint32_t n0 = f->nops, nconv = 0;
	for (uint32_t i = 0; i < n0; i++) {
		Op *op = &f->ops[i];
		if (op->code != OP_ATTENTION || op->ia[2] < 0 || op->layer < 0 || listed(s->decode_dense, op->layer))
			continue;
		ValueId b = ir_emit(m, f, knob >= 0 ? OP_KNOB : OP_CONST, ir_type_scalar(DT_I32), NULL, 0, op->loc);
		Op *c = ir_def(f, b);
		op = &f->ops[i];         /* ir_emit may move the array */
		c->ia[0] = knob >= 0 ? knob : 0;
		c->layer = op->layer;
		op->code = OP_ATTENTION_QUEST;
		op->args[op->nargs++] = b;
		op->ia[3] = s->budget;
		op->ia[4] = s->sinks;
		op->ia[5] = s->window;
		op->ia[6] = 1 + layer_stat(m, "decode", op->layer, s->decode_loc);
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
		bool realised = st->verb == POL_ATTEND &&
		                ((decode && st->attend.kind == AK_DECODE) || (prefill && st->attend.kind == AK_PREFILL));
		if (!realised)
			p->stmts[n++] = *st;
	}
	if (p)
		p->nstmts = n;
}

bool
pass_sparse_attention(Module *m, Diag *d)
{
	(void)d;
	SparseSpec s = read_attend(m->policy);
	if (!s.decode && !s.prefill)
		return true;
	int nquest = 0, nblock = 0;
	if (s.decode) {
		for (uint32_t i = 0; i < m->nstates; i++)
			if (m->states[i].layer >= 0 && !listed(s.decode_dense, m->states[i].layer))
				m->states[i].page = s.page;
		int32_t knob = s.budget > 0 ? pass_knob(m, "attend.budget", DT_I32, (double)s.budget, 0, (double)s.budget,
		                                        s.decode_loc)
		                            : -1;
		for (uint32_t e = 0; e < m->nfuncs; e++)
			if (m->funcs[e]->kind == FN_STEP)
				nquest += quest_func(m, m->funcs[e], &s, knob);
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
				op->ia[6] = 1 + layer_stat(m, "prefill", op->layer, s.prefill_loc);
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
