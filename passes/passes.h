/* passes.h - the pass manager and every pass (one file each, listed in passes.def).
 * A pass is `bool pass_NAME(Module *m, Diag *d)`: it transforms m in place and
 * returns false only after reporting an error through d.  Passes rebuild a
 * function's op array rather than splicing (pass_rebuild_func does it and keeps
 * value ids dense, in op order).  The pass manager runs a named pipeline with the
 * options of `elide opt`: verify after each pass, print after a pass or all,
 * time each pass. */
#ifndef ELIDE_PASSES_H
#define ELIDE_PASSES_H

#include <stdbool.h>
#include <stdio.h>

#include "ir/ir.h"

/* ---- the passes (passes.def) ---- */
#define PASS(id, name, desc) bool pass_##id(Module *m, Diag *d);
#include "passes/passes.def"
#undef PASS

/* ---- pass_manager.c ---- */

typedef struct PassInfo {
	const char *name;                 /* command-line name, e.g. "const-fold" */
	bool (*run)(Module *m, Diag *d);
	const char *desc;
} PassInfo;

extern const PassInfo pass_table[];
extern const unsigned pass_count;

/* Finds a pass by command-line name ('-' and '_' interchangeable); NULL if none. */
const PassInfo *pass_find(const char *name);

typedef struct PassOptions {
	bool verify_each;        /* run ir_verify after every pass; stop at the first failure */
	bool print_after_all;    /* print the IR after every pass */
	const char *print_after; /* comma-separated pass names to print after (NULL: none) */
	bool time_passes;        /* print a timing table when the pipeline ends */
	FILE *dump;              /* where dumps and timings go (stderr when NULL) */
} PassOptions;

/* Runs the passes named in `pipeline` (comma-separated; NULL or "" runs none;
 * `default` stands for pass_default_pipeline(m)).  Unknown names are reported
 * before anything runs.  Returns false after an error. */
bool pass_run_pipeline(Module *m, const char *pipeline, const PassOptions *o, Diag *d);

/* ---- pipeline.c: the default pipeline (the only one `elide compile`, `elide run`
 * and `elide opt --passes=default` use) ---- */

/* The default pipeline for m and its policy, as pass names for pass_run_pipeline:
 * drop-layers (if the policy drops), prune-structured (if it prunes), shape-infer,
 * const-fold, cse, dce.  A static string. */
const char *pass_default_pipeline(const Module *m);
/* Runs the default pipeline with options o (NULL: none), then warns at each policy
 * statement that no pass applied (kinds no pass implements yet). */
bool pass_run_default_opts(Module *m, const PassOptions *o, Diag *d);
bool pass_run_default(Module *m, Diag *d); /* pass_run_default_opts(m, NULL, d) */

/* Whether the policy has statements of `verb`. */
bool pass_has_stmts(const Module *m, PolicyVerb verb);
/* Removes the policy statements of `verb` (the ones a pass has realised). */
void pass_drop_stmts(Module *m, PolicyVerb verb);
/* Appends text (lines) to the module's manifest notes. */
void pass_add_notes(Module *m, const char *text);

/* Rebuilds f keeping the ops with keep[i] (all when keep is NULL) and replacing every
 * operand v by repl[v] first (when repl is non-NULL and repl[v] != IR_NO_VALUE).
 * Values are renumbered densely in op order; use lists are cleared. */
void pass_rebuild_func(Module *m, Func *f, const bool *keep, const ValueId *repl);

#endif
