/* passes.h - the pass manager, every pass (one file each, listed in passes.def) and
 * the utilities passes share (pass_util.c, pass_layers.c); a pass calls utilities,
 * never another pass's file.
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

/* Runs the passes named in `pipeline` (comma-separated; NULL or "" runs none).
 * Unknown names are reported before anything runs.  Returns false after an error. */
bool pass_run_pipeline(Module *m, const char *pipeline, const PassOptions *o, Diag *d);

/* The default pipeline: the policy's layer drops, then its structured pruning (which
 * scores the layers left), then quantisation of the weights left, then shape inference, constant folding, CSE, DCE; then a warning at each policy statement
 * that no pass applied (statements of kinds no pass implements yet). */
bool pass_run_default(Module *m, Diag *d);

/* quantize.c: appends `quantize weights FORMAT [group G]` to the module's policy (made
 * if there is none), after its own statements: `elide compile --quantize`.  False
 * when the format or group is not valid. */
bool pass_quantize_add_stmt(Module *m, const char *format, int group);

/* ---- pass_util.c: what passes share ---- */

/* Whether the policy has statements of `verb`. */
bool pass_has_stmts(const Module *m, const char *verb);
/* Removes the policy statements of `verb` (the ones a pass has realised). */
void pass_drop_stmts(Module *m, const char *verb);
/* Appends text (lines) to the module's manifest notes. */
void pass_add_notes(Module *m, const char *text);

/* Rebuilds f keeping the ops with keep[i] (all when keep is NULL) and replacing every
 * operand v by repl[v] first (when repl is non-NULL and repl[v] != IR_NO_VALUE).
 * Values are renumbered densely in op order; use lists are cleared. */
void pass_rebuild_func(Module *m, Func *f, const bool *keep, const ValueId *repl);

/* Recomputes every value's type from params, attributes and ir_infer_type; false
 * with a message in err when an op no longer type-checks (a bug of the pass). */
bool pass_retype(Module *m, char *err, size_t nerr);

/* Number of elements of all params. */
int64_t pass_param_count(const Module *m);

/* The manifest notes of a pass that removes parameters: begin records the counts,
 * the pass writes its lines to f, end (when ok) appends them to the module's notes
 * after a line "PASS: params a -> b (removed c), layers x -> y" if anything changed. */
typedef struct PassNotes {
	FILE *f;
	char *text;
	size_t len;
	int64_t params;
	int32_t layers;
} PassNotes;
void pass_notes_begin(PassNotes *pn, const Module *m);
void pass_notes_end(PassNotes *pn, Module *m, const char *pass, bool changed, bool ok);

/* ---- pass_layers.c: layer boundaries and residual blocks, and their removal ---- */

/* The two residual blocks of a decoder layer: x = x + attn(norm(x)) and
 * x = x + ffn(norm(x)).  A block is the add onto the residual stream and every op
 * of the layer its other operand is computed from (back to the stream value `in`),
 * none of whose values is used outside the block. */
typedef enum PassBlockKind {
	PB_ATTN, /* holds one attention op (and its KV cache) */
	PB_FFN,  /* no attention: an MLP ending in a linear */
	PB_COUNT
} PassBlockKind;

/* ORDER: PassBlockKind */
extern const char *const pass_block_names[PB_COUNT];

typedef struct PassBlock {
	int32_t layer;
	PassBlockKind kind;
	ValueId in, out;           /* the stream before the block, and the add after it */
	uint32_t *ops; uint32_t nops; /* op indices of the block, the add included */
	uint32_t wout_op;          /* the linear whose output the add takes (o_proj, down_proj) */
	int32_t state;             /* KV cache of the attention op, -1 if none */
} PassBlock;

typedef struct PassLayers {
	int32_t nlayers;
	ValueId *layer_in;         /* [nlayers] residual value entering the region (IR_NO_VALUE if unclear) */
	ValueId *layer_out;        /* [nlayers] the one value leaving the region (IR_NO_VALUE if unclear) */
	PassBlock *blocks; uint32_t nblocks; /* residual blocks of the clean layers, in order */
} PassLayers;

/* Finds the layer boundaries and residual blocks of f (computes f's use lists). */
void pass_find_layers(Module *m, Func *f, PassLayers *ly);
void pass_layers_free(PassLayers *ly);
/* The block of kind k in layer l, or NULL. */
const PassBlock *pass_find_block(const PassLayers *ly, int32_t l, PassBlockKind k);

/* Removes the layers l with !kept[l] from every function (uses of the layer's
 * output are forwarded to its input), with their params and states, then renumbers
 * layers, params (param ops) and states (attention ops) and maps the layer indices
 * of the remaining policy statements.  False (nothing changed) when a removed
 * layer's boundary is not one residual value in some function; *bad_layer says which. */
bool pass_remove_layers(Module *m, const bool *kept, int32_t *bad_layer);

/* Removes the residual blocks gone[l * PB_COUNT + k] from every function (uses of
 * the block's add are forwarded to the block's input), with the params and states
 * no op left refers to; renumbers params (param ops) and states (attention ops).
 * Layers stay, so policy indices stay valid.  False (nothing changed) when some
 * function holds ops of such a layer but not that block; *bad_layer and *bad_kind
 * say which. */
bool pass_remove_blocks(Module *m, const bool *gone, int32_t *bad_layer, PassBlockKind *bad_kind);

#endif
