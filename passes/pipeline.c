/* pipeline.c - the default pass pipeline: the one list of passes that `elide compile`,
 * `elide run` (JIT and --interp) and `elide opt --passes=default` run, so that a
 * compiled object, the JIT and the interpreter execute the same module.
 *   1. drop-layers, when the policy has `drop` statements: drops are the user's fixed
 *      choice, so they come first, and every later pass sees the layers that are left;
 *   2. prune-structured, when the policy has `prune` statements: it scores the layers
 *      left after the drops (`prune layer keep N` counts them, calibration runs the
 *      dropped model) and cuts params, so it must run before shapes are settled;
 *   3. shape-infer: pruning changed param shapes; every value is retyped from them;
 *   4. early-exit, when the policy has an `exit` statement: exit sites after the
 *      layers left, on final shapes (the K/V tails it clones are the pruned ones);
 *   5. layer-skip, when the policy has `skip` statements: variants and predicated
 *      FFN blocks on what early exit left;
 *   6. sparse-attention, when the policy has `attend` statements: `attend decode`
 *      turns the decode attention of every step entry into Quest page selection,
 *      with page bounds on the caches and the `attend.budget` knob; `attend
 *      prefill` turns the attention of prefill entries into block-sparse attention;
 *   7. quantize, when the policy has `quantize` statements: the storage format of the
 *      weight matrices left, on their final shapes (shapes and ops do not change);
 *   8. row-sink: a prefill's last row (an encoder's pooled row) is computed alone
 *      through the last layer's row-wise ops and attention query; after the passes
 *      that rewrite layers and attention, on final shapes;
 *   9. const-fold, then cse, then dce: folding exposes identical ops, merging them
 *      leaves dead ones, dce removes what both left behind;
 *  10. (pass_run_default) a warning at each policy statement that no pass applied.
 * docs/ir.md ("The default pipeline") gives the same order with its reasons. */
#include "passes/passes.h"

#include <stdio.h>

const char *
pass_default_pipeline(const Module *m)
{
	static char buf[192];
	snprintf(buf, sizeof buf, "%s%sshape-infer,%s%s%s%srow-sink,const-fold,cse,dce",
	         pass_has_stmts(m, POL_DROP) ? "drop-layers," : "", pass_has_stmts(m, POL_PRUNE) ? "prune-structured," : "",
	         pass_has_stmts(m, POL_EXIT) ? "early-exit," : "", pass_has_stmts(m, POL_SKIP) ? "layer-skip," : "",
	         pass_has_stmts(m, POL_ATTEND) ? "sparse-attention," : "", pass_has_stmts(m, POL_QUANTIZE) ? "quantize," : "");
	return buf;
}

/* Warns about each policy statement that no pass of the pipeline applied (passes
 * remove the statements they execute): the code is built without it. */
static void
warn_unapplied(const Module *m, Diag *d)
{
	for (uint32_t i = 0; m->policy && i < m->policy->nstmts; i++) {
		const PolicyStmt *s = &m->policy->stmts[i];
		const char *subj = s->verb == POL_SKIP && s->skip.kind == SK_ROUTER ? "layers" : ir_policy_subject_name(s);
		diag_warning(d, s->loc, "'%s%s%s' statements are not implemented by this version of elide: ignored, the "
		             "model is compiled without it",
		             ir_vocab_name(&ir_verb_vocab, s->verb), subj ? " " : "", subj ? subj : "");
	}
}

bool
pass_run_default_opts(Module *m, const PassOptions *o, Diag *d)
{
	bool ok = pass_run_pipeline(m, pass_default_pipeline(m), o, d);
	if (ok)
		warn_unapplied(m, d);
	return ok;
}

bool
pass_run_default(Module *m, Diag *d)
{
	return pass_run_default_opts(m, NULL, d);
}
