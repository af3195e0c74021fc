/* drop_layers.c - the `drop-layers` pass: static layer removal named by the policy
 * (`drop layers a..b` or `drop layers a, b, ...`; docs/techniques.md, "Static layer
 * drop"): the listed layers leave every entry at compile time, their output
 * replaced by their input (a layer is one residual block), with their params and KV
 * caches; the remaining layers are renumbered.
 *   1. for each `drop` statement, in order: the layers it names (indices of the model
 *      as written: a drop before it has already mapped them to the current
 *      numbering and dropped those gone);
 *   2. refuse to drop every remaining layer; remove them (pass_remove_layers) and
 *      retype the module;
 *   3. drop the realised statements from the policy and record in the manifest notes
 *      which layers went and the exact parameter count before and after.
 * Runs before prune-structured in the default pipeline: drops are the user's fixed
 * choice, and pruning then scores (and `keep` counts) the layers that are left; the
 * layer indices of the prune statements are mapped to the new numbering, so they
 * still name layers of the model as written.  A statement whose layers are all gone
 * already removes nothing. */
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

/* The layers statement s names, as kept[l] = false; returns how many. */
static int32_t
named_layers(const PolicyStmt *s, int32_t nlayers, bool *kept)
{
	for (int32_t l = 0; l < nlayers; l++)
		kept[l] = true;
	int32_t n = 0;
	for (int32_t l = 0; l < nlayers; l++) {
		if (ir_policy_layers_has(&s->drop.layers, l) && kept[l]) {
			kept[l] = false;
			n++;
		}
	}
	return n;
}

/* Steps 1 and 2 for one statement; notes get "drop layers: L -> L' layers, removed ...". */
static bool
drop_stmt(Module *m, const PolicyStmt *s, Diag *d, FILE *notes)
{
	int32_t L = m->nlayers;
	bool *kept = xmalloc((size_t)L + 1);
	int32_t n = named_layers(s, L, kept);
	bool ok = true;
	int32_t bad = -1;
	char err[256];
	if (n > 0 && n == L) {
		diag_error(d, s->loc, "drop removes every remaining layer of the model (%d)", L);
		ok = false;
	} else if (n > 0 && !pass_remove_layers(m, kept, &bad)) {
		diag_error(d, s->loc, "cannot drop layer %d: it is not one residual block in every entry", bad);
		ok = false;
	} else if (n > 0 && !pass_retype(m, err, sizeof err)) {
		diag_error(d, s->loc, "internal error: the module does not type-check after drop: %s", err);
		ok = false;
	} else if (n > 0) {
		fprintf(notes, "drop layers: %d -> %d layers, removed", L, m->nlayers);
		for (int32_t l = 0; l < L; l++)
			if (!kept[l]) {
				fprintf(notes, " %d", l);
				ir_add_effect(m, (PolicyEffect){ s->loc, "layer", l, 1, 0 });
			}
		fputc('\n', notes);
	}
	free(kept);
	return ok;
}

bool
pass_drop_layers(Module *m, Diag *d)
{
	if (!pass_has_stmts(m, POL_DROP))
		return true;
	Policy *p = m->policy;
	PassNotes pn;
	pass_notes_begin(&pn, m);
	bool ok = true;
	for (uint32_t i = 0; i < p->nstmts && ok; i++)
		if (p->stmts[i].verb == POL_DROP)
			ok = drop_stmt(m, &p->stmts[i], d, pn.f);
	pass_notes_end(&pn, m, "drop-layers", m->nlayers != pn.layers, ok);
	if (ok)
		pass_drop_stmts(m, POL_DROP);
	return ok;
}
