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
	const char *skip;        /* comma-separated passes left out of the pipeline (NULL: none),
	                          * e.g. "row-sink" to compare a build with and without it */
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
 * early-exit, layer-skip (if it exits or skips), quantize (if it quantizes),
 * row-sink, const-fold, cse, dce.  A static string. */
const char *pass_default_pipeline(const Module *m);
/* Runs the default pipeline with options o (NULL: none), then warns at each policy
 * statement that no pass applied (kinds no pass implements yet). */
bool pass_run_default_opts(Module *m, const PassOptions *o, Diag *d);
bool pass_run_default(Module *m, Diag *d); /* pass_run_default_opts(m, NULL, d) */

/* quantize.c: appends `quantize weights FORMAT [group G] [activations A]` to the
 * module's policy (made if there is none), after its own statements: `elide compile
 * --quantize`; act is an ActFormat, or -1 for the default (int8 for q8/q4).  False
 * when the format, group or activations are not valid (int8 with bf16 or f32). */
bool pass_quantize_add_stmt(Module *m, const char *format, int group, int act);
/* Gives activations `act` to every q8/q4 quantize statement of m's policy and every
 * param already stored as q8/q4 (elide compile --activations); returns how many
 * statements and params it changed. */
int pass_quantize_set_act(Module *m, ActFormat act);

/* ---- pass_util.c: what passes share ---- */

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

/* Recomputes every value's type from params, attributes and ir_infer_type; false
 * with a message in err when an op no longer type-checks (a bug of the pass). */
bool pass_retype(Module *m, char *err, size_t nerr);

/* `rel` against the directory of `base` (a source file) when relative and not
 * readable as it is (calibration files, weights named by a policy); in a's memory. */
char *pass_resolve_path(Arena *a, const char *base, const char *rel);

/* The entry's position argument, as the interpreter binds it: the i32 scalar named
 * `pos`, else a scalar second argument; -1 when none. */
int32_t pass_pos_arg(const Func *f);
/* The knob (or stat slot) named `name`, declared with these settings if new. */
int32_t pass_knob(Module *m, const char *name, DType dt, double dflt, double lo, double hi, Loc loc);
int32_t pass_stat(Module *m, const char *name, Loc loc);

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
/* The kinds of block are PruneBlockKind (ir/ir.h: PB_ATTN, PB_FFN; ir_block_vocab names them). */

typedef struct PassBlock {
	int32_t layer;
	PruneBlockKind kind;
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

/* Finds the layer boundaries and residual blocks of f's top level, the ops outside
 * if/else regions (computes f's use lists). */
void pass_find_layers(Module *m, Func *f, PassLayers *ly);
void pass_layers_free(PassLayers *ly);
/* The block of kind k in layer l, or NULL. */
const PassBlock *pass_find_block(const PassLayers *ly, int32_t l, PruneBlockKind k);

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
bool pass_remove_blocks(Module *m, const bool *gone, int32_t *bad_layer, PruneBlockKind *bad_kind);

/* ---- pass_replay.c: rebuilding an entry op by op with new ops in between ---- */

typedef struct Replay {
	Module *m;
	Func *src;          /* the entry as it was (read; replaced by pass_replay_end) */
	Func g;             /* the entry being built */
	ValueId *map;       /* src value -> g value (IR_NO_VALUE: not copied) */
	Builder b;          /* emits new ops into g; b.layer stamps them (-1 outside layers) */
} Replay;

void pass_replay_begin(Replay *rp, Module *m, Func *src, Diag *d);
/* Appends a copy of op (of function `from`) with operands args[] (values of g). */
ValueId pass_replay_copy(Replay *rp, const Func *from, const Op *op, const ValueId *args, int32_t layer);
/* Copies source op i with its operands mapped; records and returns its new value. */
ValueId pass_replay_op(Replay *rp, uint32_t i);
/* Inlines helper fn on args[] (values of g); returns the value it returns. */
ValueId pass_replay_inline(Replay *rp, const Func *fn, const ValueId *args);
/* Clones the ops of layer `layer` of the source that value v is computed from, with
 * the layer's input `in` replaced by h (a value of g); leaves outside the layer are
 * reused when copied, else cloned.  local[] ([src->nvals], IR_NO_VALUE-filled) caches
 * the clones of one slice.  IR_NO_VALUE when v depends on another value of the stream. */
ValueId pass_replay_slice(Replay *rp, ValueId v, int32_t layer, ValueId in, ValueId h, ValueId *local);
/* Copies the source's ops from index `from` through its top-level 'ret' on the layer
 * set run[] ([ly->nlayers], the layers before `from` included): the ops of a layer
 * not run are left out and uses of its output take its input (ly: the source's
 * layers).  The ret's `layers` becomes the number of layers run (0: all).  Unless
 * keep_map, the value map is restored afterwards (the variant's values live in its
 * branch).  Returns the ret's value, IR_NO_VALUE when there is none. */
ValueId pass_replay_variant(Replay *rp, const PassLayers *ly, uint32_t from, const bool *run, bool keep_map);
/* New ops through the Builder: a knob's value; op c on a (and b unless IR_NO_VALUE)
 * with ia[0] = ia0; a stat bump. */
ValueId pass_replay_knob(Replay *rp, int32_t knob, Loc loc);
ValueId pass_replay_op2(Replay *rp, Opcode c, ValueId a, ValueId b, int64_t ia0, Loc loc);
void pass_replay_stat(Replay *rp, int32_t slot, int64_t amount, Loc loc);
/* Swaps the new ops and values into the entry (commit), or drops them. */
void pass_replay_end(Replay *rp, bool commit);

#endif
