/* ir.h - the graph IR of elide: types, ops, values, modules, policies.
 * One header for the ir/ folder, divided into per-file sections.  A Module owns
 * params (named constant tensors), state (KV caches), functions (entries) and the
 * policy chosen for compilation.  Values are SSA: every op defines exactly one value,
 * identified by a 32-bit id into Func.vals.  A function's ops are one array in
 * program order; layer regions are the maximal runs of ops carrying the same
 * Op.layer (>= 0), and they appear in increasing layer order.  Passes rebuild the
 * op array rather than splicing.  Memory: names, strings, functions, their
 * arguments and return types, and policies live in the module's arena; the growable
 * arrays (Module.params, .states, .funcs, Func.ops, .vals), use lists and param data
 * are malloc'ed; ir_free_module frees both. */
#ifndef ELIDE_IR_H
#define ELIDE_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "support/support.h"

/* ---- types.c: dtypes and tensor types ---- */

typedef enum DType {
	DT_F32,  /* IEEE binary32 */
	DT_I32,  /* signed 32-bit integer: token ids, positions, argmax results */
	DT_BF16, /* bfloat16 storage (converted to f32 by the weight loader) */
	DT_F16,  /* IEEE binary16 storage (converted to f32 by the weight loader) */
	DT_I8,   /* reserved for quantised weights */
	DT_BOOL, /* a predicate: the result of cmp, and, or, not; the condition of 'if' */
	DT_COUNT
} DType;

#define IR_MAX_RANK 4

typedef struct Type {
	DType dtype;
	uint8_t rank;                /* 0 = scalar */
	bool dyn0;                   /* dims[0] is a bound: the sequence length is <= dims[0] */
	int64_t dims[IR_MAX_RANK];   /* static extents (dims[0] is the bound when dyn0) */
} Type;

const char *ir_dtype_name(DType t);   /* "f32", "i32", ... */
int ir_dtype_from_name(const char *s); /* -1 if unknown */
size_t ir_dtype_size(DType t);
Type ir_type_scalar(DType t);
Type ir_type_vec(DType t, int64_t n);
Type ir_type_mat(DType t, int64_t rows, int64_t cols);
int64_t ir_type_numel(Type t); /* upper bound when dyn0 */
bool ir_type_eq(Type a, Type b);
/* Well-formed: known dtype, rank in range, positive extents, dyn0 only with rank >= 1. */
bool ir_type_valid(Type t);
/* Writes e.g. "f32[<=256, 288]" into buf (always NUL-terminated). */
char *ir_type_str(Type t, char *buf, size_t n);

/* ---- ops.def: the op table ---- */

enum {
	OPF_PURE = 1,     /* no effect besides its value: CSE and DCE may touch it */
	OPF_ELEMWISE = 2, /* result shape == operand 0's, computed per element */
	OPF_LEAF = 4,     /* defines a value from outside the op graph (arg, param, const, knob) */
	OPF_VOID = 8,     /* defines no usable value (control flow, side effects): printed without '%N =' */
};

typedef enum Opcode {
#define OP(e, name, arity, flags, ia, fa, opt) OP_##e,
#include "ir/ops.def"
#undef OP
	OP_COUNT
} Opcode;

#define IR_NIA 8 /* integer attribute slots of an op */
#define IR_NFA 4 /* float attribute slots of an op */

/* Attribute names of each op's ia[]/fa[] slots in the text (NULL: printed as iaK /
 * faK when non-zero); named slots in `optional` are left out of the text when zero. */
typedef struct IrAttrSpec {
	const char *ia[IR_NIA];
	const char *fa[IR_NFA];
	unsigned optional;   /* bit k: ia[k], bit 8 + k: fa[k] (IR_OPT_IA, IR_OPT_FA) */
} IrAttrSpec;
#define IR_ATTRS(...) { __VA_ARGS__ }
#define IR_NO_ATTRS { NULL }
#define IR_OPT_IA(k) (1u << (k))
#define IR_OPT_FA(k) (1u << (IR_NIA + (k)))

extern const char *const ir_op_names[OP_COUNT];
extern const IrAttrSpec ir_op_attrs[OP_COUNT];
extern const int ir_op_arity[OP_COUNT]; /* -1 = variadic */
extern const unsigned ir_op_flags[OP_COUNT];
int ir_op_from_name(const char *s); /* -1 if unknown */
/* An elementwise op of one operand (OPF_ELEMWISE, arity 1): silu, tanh, scale, ... */
static inline bool ir_op_is_unary_elemwise(int c) { return c >= 0 && c < OP_COUNT && (ir_op_flags[c] & OPF_ELEMWISE) && ir_op_arity[c] == 1; }

/* Storage format of a param (quant.c, docs/quantization.md).  Every format has a
 * dequantised f32 value per element, which Param.data holds once quantised. */
typedef enum QFormat {
	QF_F32,   /* binary32 */
	QF_BF16,  /* bfloat16, rounded to nearest even */
	QF_Q8,    /* int8 codes, one f16 scale per group along the input dimension */
	QF_Q4,    /* 4-bit codes with offset 8, one f16 scale per group */
	QF_COUNT
} QFormat;

/* Activations of the linears that read a q8/q4 param (docs/quantization.md): the
 * param records it next to its format, and both the interpreter and the compiled
 * code compute with it.  bf16 and f32 params always have f32 activations. */
typedef enum ActFormat {
	AF_F32,   /* the f32 input times the dequantised weights */
	AF_INT8,  /* the input quantised per row and group to int8 (ir_quant_row, ir_quant_dot) */
	AF_COUNT
} ActFormat;

/* ---- policy.c, policy.def: typed policy statements ----
 * A policy is a list of statements, each a verb with its options as typed fields
 * (one struct per verb).  The front end (frontend/policy.c) checks the language
 * once and fills them; the .eir parser fills them from `key = value` text; the
 * printer writes them back (an exact round trip); passes read the fields.  Every
 * option has a row in policy.def (its word, verb, subject, value kind and field):
 * an option that was written has its bit in PolicyStmt.given and its location in
 * key_loc; a field whose bit is clear holds 0 and the pass's default applies. */

typedef enum PolicyVerb {
	POL_PRUNE,  /* structured pruning at compile time (prune-structured) */
	POL_DROP,   /* static layer removal (drop-layers) */
	POL_SKIP,   /* layer / FFN skipping at run time (no pass yet) */
	POL_EXIT,   /* early exit (no pass yet) */
	POL_ATTEND, /* sparse attention (no pass yet) */
	POL_QUANTIZE, /* storage format of weight matrices (quantize) */
	POL_VERB_COUNT
} PolicyVerb;

typedef enum PruneUnit {
	PU_FFN,      /* ffn_neuron: hidden units of an MLP */
	PU_HEAD,     /* head: query heads (with their o_proj columns) */
	PU_KV_GROUP, /* kv_group: a KV head and the query heads sharing it */
	PU_LAYER,    /* layer: whole decoder layers */
	PU_SUBLAYER, /* sublayer: residual blocks (attention or FFN) */
	PU_COUNT
} PruneUnit;

typedef enum PruneScore {
	PS_L1,      /* sum |w| over the unit's weights */
	PS_L2,      /* sqrt(sum w^2) over the unit's weights */
	PS_MAW,     /* max |W_up[k,:]| + max |W_gate[k,:]| (ffn_neuron only) */
	PS_ANGULAR, /* layers, blocks: mean arccos(cos(x_in, x_out)) / pi */
	PS_BI,      /* layers, blocks: block influence 1 - E[cos(x_in, x_out)] */
	PS_ACT,     /* sum |w_ij| * ||X_j|| (Wanda): weights times input-feature norms */
	PS_COUNT
} PruneScore;

typedef enum PruneBlockKind {
	PB_ATTN, /* attention: holds one attention op (and its KV cache) */
	PB_FFN,  /* ffn: no attention, an MLP ending in a linear */
	PB_COUNT
} PruneBlockKind;

typedef enum ExitMeasure {
	EM_MARGIN,    /* top-1 minus top-2 probability */
	EM_MAXPROB,   /* top-1 probability */
	EM_ENTROPY,   /* entropy of the distribution (exit below the threshold) */
	EM_STATE_COS, /* cosine of the hidden states of consecutive sites */
	EM_COUNT
} ExitMeasure;

typedef enum ExitKv {
	EKV_PROPAGATE, /* the skipped layers' KV entries are filled from the exit state */
	EKV_NONE,      /* the skipped layers' KV entries stay empty */
	EKV_COUNT
} ExitKv;

typedef enum SkipKind {
	SK_SCHEDULE, /* `skip schedule linear(n_max, n_min, ctx)` (SkipDecode) */
	SK_FFN,      /* `skip ffn when cos(in, out) > T` (FFN-SkipLLM) */
	SK_ROUTER,   /* `skip layers from router` (FiRST) */
	SK_COUNT
} SkipKind;

typedef enum AttendKind {
	AK_DECODE,  /* `attend decode`: Quest pages, sinks, window */
	AK_PREFILL, /* `attend prefill`: block top-k or coverage */
	AK_COUNT
} AttendKind;

typedef enum PrefillMethod {
	PM_BLOCK_TOPK, /* block_topk(block B, topk K) */
	PM_COVERAGE,   /* coverage gamma G [block B] (FlexPrefill) */
	PM_COUNT
} PrefillMethod;

/* A vocabulary: the words of an enum, names[e] for value e (ORDER: the enum). */
typedef struct IrVocab {
	const char *const *names;
	int n;
} IrVocab;
extern const IrVocab ir_verb_vocab, ir_unit_vocab, ir_score_vocab, ir_block_vocab, ir_measure_vocab, ir_kv_vocab,
	ir_skip_vocab, ir_attend_vocab, ir_method_vocab, ir_qformat_vocab, ir_actformat_vocab;
const char *ir_vocab_name(const IrVocab *v, int e); /* "?" when out of range */
int ir_vocab_find(const IrVocab *v, const char *s); /* -1 if unknown (or s NULL) */
/* "'a', 'b' or 'c'" (sep ", ", last " or ") into buf, for messages. */
char *ir_vocab_list(const IrVocab *v, const char *last, char *buf, size_t n);

#define IR_POLICY_MAX_LIST 64

typedef struct PolicyKeep {
	double value;     /* the fraction kept, in (0, 1], or the count kept (count) */
	bool count;       /* value counts units (per layer), layers or blocks */
	int64_t num, den; /* written as the fraction num/den (value = num/den), else 0 */
} PolicyKeep;

typedef struct PolicyLayers { /* layer indices of the model as written */
	bool range;               /* the half-open range lo..hi (else the list) */
	int32_t lo, hi;
	uint32_t n;               /* list[0..n) */
	int32_t list[IR_POLICY_MAX_LIST];
} PolicyLayers;

typedef struct PolicyNames { /* names as written (weights, roles) */
	uint32_t n;
	const char *names[IR_POLICY_MAX_LIST];
} PolicyNames;

typedef struct PolicyPrune {
	PruneUnit unit;           /* the subject */
	PolicyKeep keep;          /* required */
	PruneScore score;         /* default: bi for layer and sublayer, l2 otherwise */
	PruneBlockKind block;     /* sublayer: the only kind of block cut (both when not given) */
	PolicyLayers layers;      /* range of candidate layers (all when not given) */
	int64_t multiple;         /* rounding of kept widths (default per unit) */
	PolicyLayers protect;     /* list of layers never cut (first and last when not given) */
	const char *calibrate;    /* calibration tokens file, as written */
	int64_t tokens;           /* calibration tokens used (default 512) */
} PolicyPrune;

typedef struct PolicyDrop {
	PolicyLayers layers;      /* range or list; required */
} PolicyDrop;

typedef struct PolicySkip {
	SkipKind kind;            /* the subject */
	int64_t n_max, n_min, ctx;/* schedule: the layer budget decays from n_max to n_min over ctx positions */
	double threshold;         /* ffn: skip the block when cos(in, out) > threshold */
	int64_t warmup;           /* ffn: first positions always run every block */
	PolicyLayers cold;        /* ffn: list of layers never skipped */
	PolicyLayers layers;      /* ffn: range of layers that may skip */
	int64_t buckets;          /* router: number of routing buckets */
	const char *calibrate;    /* router: calibration tokens file */
} PolicySkip;

typedef struct PolicyExit {
	PolicyLayers at;          /* list of exit sites (after these layers); required */
	const char *head;         /* the fn of the model computing an exit's logits; required */
	ExitMeasure measure;      /* confidence measure */
	double threshold;         /* exit when the measure passes it */
	double decay;             /* tau of the threshold's decay with the position */
	int64_t patience;         /* consecutive confident sites needed */
	ExitKv kv;                /* what the skipped layers' KV caches get */
} PolicyExit;

typedef struct PolicyAttend {
	AttendKind kind;          /* the subject */
	int64_t page, budget;     /* decode: quest(page P, budget B), tokens per page and attended */
	int64_t sinks, window;    /* decode: first positions and recent positions always attended */
	PrefillMethod method;     /* prefill: required */
	int64_t block, topk;      /* prefill: block size (both methods), blocks kept (block_topk) */
	double gamma;             /* prefill coverage: attention mass covered */
	int64_t min_tokens;       /* prefill: shorter prompts stay dense */
	PolicyLayers dense_layers;/* list of layers that stay dense */
} PolicyAttend;

typedef struct PolicyQuantize {
	QFormat format;           /* required */
	int64_t group;            /* q8/q4: elements per scale (default 32) */
	ActFormat act;            /* q8/q4: activations (int8 when not given); others f32 only */
	PolicyLayers layers;      /* range of layers covered (all when not given) */
	PolicyNames except;       /* names left f32 ("wq", "embed"); none when not given */
} PolicyQuantize;

typedef enum PolicyKeyKind {
	PKK_KEEP,   /* PolicyKeep: a fraction, a count or num/den */
	PKK_INT,    /* int64_t */
	PKK_NUM,    /* double */
	PKK_RANGE,  /* PolicyLayers, a range */
	PKK_LIST,   /* PolicyLayers, a list */
	PKK_LAYERS, /* PolicyLayers, a range or a list */
	PKK_STRING, /* const char *, a quoted string */
	PKK_NAMES,  /* PolicyNames, a list of names */
	PKK_NAME,   /* const char *, an identifier (a fn name) */
	PKK_WORD,   /* an enum, one word of the row's vocabulary */
} PolicyKeyKind;

typedef enum PolicyKey {
#define POLICY_KEY(id, word, verb, subject, kind, field, vocab) PK_##id,
#include "ir/policy.def"
#undef POLICY_KEY
	PK_COUNT
} PolicyKey;

typedef struct PolicyKeyInfo {
	const char *word;
	PolicyVerb verb;
	int subject;              /* -1: any */
	PolicyKeyKind kind;
	size_t offset;            /* of the field in PolicyStmt */
	const IrVocab *vocab;     /* PKK_WORD */
} PolicyKeyInfo;
extern const PolicyKeyInfo ir_policy_keys[PK_COUNT];

typedef struct PolicyStmt {
	PolicyVerb verb;
	union {                   /* by verb */
		PolicyPrune prune;
		PolicyDrop drop;
		PolicySkip skip;
		PolicyExit exit;
		PolicyAttend attend;
		PolicyQuantize quantize;
	};
	uint64_t given;           /* bit k: option k (PolicyKey) was written */
	Loc loc;                  /* the statement's verb */
	Loc key_loc[PK_COUNT];    /* where option k was written */
} PolicyStmt;

typedef struct Policy {
	const char *name;         /* NULL or "dense" means no policy */
	PolicyStmt *stmts; uint32_t nstmts;
	Loc loc;
} Policy;

static inline bool ir_policy_given(const PolicyStmt *s, PolicyKey k) { return (s->given >> k) & 1; }
/* The subject of s: its PruneUnit, SkipKind or AttendKind; -1 for drop and exit. */
int ir_policy_subject(const PolicyStmt *s);
/* The subject's word ("ffn_neuron", "router", "decode", "layers" for drop, "weights" for
 * quantize), NULL for exit. */
const char *ir_policy_subject_name(const PolicyStmt *s);
/* Starts statement s of verb v with the subject named `subject` (the vocabulary of
 * the verb's subjects; "layers" for drop, "weights" for quantize, NULL for exit).  False if it names none. */
bool ir_policy_init(PolicyStmt *s, PolicyVerb v, const char *subject, Loc loc);
/* The option of s's verb and subject called `word`; -1 if none. */
int ir_policy_key(const PolicyStmt *s, const char *word);

/* An option value as written (language or .eir text), before it is typed. */
typedef enum PolicyValKind {
	PV_NUM,    /* num (is_int when written without '.') */
	PV_FRAC,   /* lo/hi written as a fraction (num holds the quotient) */
	PV_RANGE,  /* lo..hi, half open */
	PV_LIST,   /* ints[0..nints) ([] is an empty list of any kind) */
	PV_NAMES,  /* strs[0..nstrs): a list of quoted strings */
	PV_STRING, /* str */
	PV_IDENT,  /* str: a bare word such as "maw", "propagate" */
} PolicyValKind;

typedef struct PolicyVal {
	PolicyValKind kind;
	double num;
	int64_t lo, hi;           /* PV_RANGE, PV_FRAC */
	int64_t ints[IR_POLICY_MAX_LIST]; uint32_t nints; /* PV_LIST */
	const char *strs[IR_POLICY_MAX_LIST]; uint32_t nstrs; /* PV_NAMES */
	const char *str;          /* PV_STRING, PV_IDENT */
	bool is_int;              /* PV_NUM written without '.' */
} PolicyVal;

/* Sets option k of s from v (strings are kept as pointers: they must outlive s),
 * marks it given at loc.  False with a message in err (the field unchanged) when k
 * does not belong to s's verb and subject or v does not fit the option's kind. */
bool ir_policy_set(PolicyStmt *s, PolicyKey k, const PolicyVal *v, Loc loc, char *err, size_t nerr);
/* The value of option k of s as ir_policy_set takes it (the inverse: set(get) is the identity). */
PolicyVal ir_policy_get(const PolicyStmt *s, PolicyKey k);
/* The word of the first required option s lacks ("keep", "at", ...), NULL if none. */
const char *ir_policy_missing(const PolicyStmt *s);
/* Whether layer l is in the set. */
bool ir_policy_layers_has(const PolicyLayers *ls, int32_t l);

/* ---- module.c: values, ops, functions, params, state ---- */

typedef uint32_t ValueId;
#define IR_NO_VALUE UINT32_MAX
#define IR_MAX_OPERANDS 8

typedef struct Op {
	Opcode code;
	ValueId dst;                 /* the value this op defines */
	uint8_t nargs;               /* operands used (<= IR_MAX_OPERANDS) */
	ValueId args[IR_MAX_OPERANDS];
	int64_t ia[IR_NIA];          /* integer attributes, meaning per op (ops.def) */
	float fa[IR_NFA];            /* float attributes, meaning per op (ops.def) */
	int32_t layer;               /* layer region index, -1 outside any layer */
	Loc loc;                     /* source location (DSL or .eir) */
} Op;

/* scalar.c: the scalar semantics of the elementwise ops, in double (the caller rounds
 * once to f32), shared by the interpreter and constant folding.  NAN for any other op. */
double ir_scalar_unary(const Op *op, double x);            /* arity 1: scale, silu, gelu, tanh */
double ir_scalar_binary(Opcode code, double x, double y); /* arity 2: add, sub, mul */

typedef struct Value {
	Type type;
	uint32_t def;                /* index of the defining op in Func.ops */
	const char *name;            /* optional name hint for printing (may be NULL) */
	uint32_t nuses;              /* filled by ir_compute_uses */
	uint32_t *uses;              /* op indices using this value (ir_compute_uses) */
} Value;

typedef struct Arg {
	const char *name;
	Type type;
} Arg;

typedef enum FuncKind {
	FN_STEP,    /* decode: one token at a position, uses the KV caches */
	FN_PREFILL, /* a bounded sequence of tokens at a start position */
	FN_FORWARD, /* encoder: whole sequence, no state */
	FN_HELPER,  /* not an entry: a model fn kept for a pass to inline (an exit head) */
} FuncKind;

typedef struct Func {
	const char *name;
	FuncKind kind;
	Arg *args;      uint32_t nargs;
	Type *rets;     uint32_t nrets;
	Op *ops;        uint32_t nops, capops;
	Value *vals;    uint32_t nvals, capvals;
	Loc loc;
} Func;


typedef struct Param {
	const char *name;    /* IR name, e.g. "wq.3" */
	const char *source;  /* tensor name in the weights file, e.g. "model.layers.3.self_attn.q_proj.weight" */
	Type type;           /* declared (and, after pruning, current) shape */
	int32_t layer;       /* layer the param belongs to, -1 if global */
	float *data;         /* f32 contents once loaded (NULL before), dequantised when quantised; owned */
	uint64_t hash;       /* content hash of the loaded f32 data (0 when not loaded) */
	DType file_dtype;    /* dtype the declaration gives the file's tensor: DT_F32 takes F32, F16
	                      * or BF16 (widened exactly), DT_BF16 / DT_F16 only that dtype */
	QFormat format;      /* storage format (QF_F32 unless quantised) */
	int32_t group;       /* q8/q4: elements per scale along the last axis */
	ActFormat act;       /* q8/q4: activations of the linears reading it; AF_F32 otherwise */
	uint8_t *qdata;      /* codes and scales once quantised (quant.c layout); owned */
	Loc loc;
} Param;

typedef enum StateKind {
	ST_KVCACHE, /* per-layer key and value cache: [ctx, kv_heads, head_dim] each */
} StateKind;

typedef struct State {
	const char *name;
	StateKind kind;
	int32_t layer;     /* layer index the cache belongs to */
	int64_t ctx;       /* positions */
	int64_t kv_heads;
	int64_t head_dim;
	int64_t page;      /* > 0: per-page key bounds are kept for Quest (docs/sparse.md) */
	Loc loc;
} State;

/* A policy knob that stays a run-time setting: the generated API and the interpreter
 * let the caller change it without recompiling; 'knob' ops read it. */
typedef struct Knob {
	const char *name;    /* e.g. "exit.threshold" */
	DType dtype;         /* DT_F32 or DT_I32 */
	double dflt;         /* value at context creation */
	double lo, hi;       /* accepted range of a setting (inclusive) */
	Loc loc;
} Knob;

/* A statistics counter of the context: 'stat' ops add to it on the path they are on. */
typedef struct StatSlot {
	const char *name;    /* e.g. "exit.site2", "kv_only_layers" */
	Loc loc;
} StatSlot;

/* What a pass did for one policy statement, for the manifest's structured policy:
 * `what` of layer `layer` went from `before` units to `after`. */
typedef struct PolicyEffect {
	Loc stmt;                 /* the statement's location: its identity (statements move) */
	const char *what;         /* static: "ffn_neuron", "head", "kv_head", "layer", "attention_block", ... */
	int32_t layer;            /* layer index, -1 for the model as a whole */
	int64_t before, after;    /* units before and after (a removed layer or block: 1 -> 0) */
} PolicyEffect;

typedef struct ModelConfig {   /* constants of the model, as declared */
	const char *names[64];
	int64_t values[64];
	uint32_t n;
} ModelConfig;

typedef struct Module {
	Arena arena;
	const char *name;          /* model name: prefix of generated symbols */
	int32_t nlayers;           /* number of layer regions */
	ModelConfig config;
	Param *params;  uint32_t nparams, capparams;
	State *states;  uint32_t nstates, capstates;
	Func **funcs;   uint32_t nfuncs, capfuncs;
	Knob *knobs;    uint32_t nknobs, capknobs;
	StatSlot *stats; uint32_t nstats, capstats;
	Policy *policy;            /* NULL: dense */
	const char *weights_path;  /* safetensors file to load params from (NULL until given) */
	const char *manifest_notes;/* text passes add for the manifest (e.g. what pruning removed) */
	PolicyStmt *stmts_written; uint32_t nstmts_written; /* the policy's statements before the
	                           * passes consumed them (ir_policy_snapshot), for the manifest */
	PolicyEffect *effects; uint32_t neffects, capeffects; /* what the passes did, per statement */
} Module;

Module *ir_new_module(const char *name);
/* Records an effect of a policy statement (passes call it as they transform). */
void ir_add_effect(Module *m, PolicyEffect e);
/* Keeps a copy of the policy's statements (the structs; their options stay in the
 * arena) in stmts_written, before passes remove the ones they realise. */
void ir_policy_snapshot(Module *m);
void ir_free_module(Module *m);
uint32_t ir_add_param(Module *m, const char *name, const char *source, Type t, int32_t layer, Loc loc);
int32_t ir_find_param(const Module *m, const char *name); /* -1 if absent */

/* ---- strmap.c: string-keyed index (constant-time name lookup) ---- */

typedef struct StrMap {
	const char **keys;   /* [cap] borrowed keys, NULL = empty slot */
	uint32_t *vals;      /* [cap] */
	uint32_t cap, n;     /* cap a power of two (0 before the first add), n keys */
} StrMap;                    /* zero-initialised = empty */
int64_t strmap_get(const StrMap *m, const char *key);           /* -1 if absent */
bool strmap_add(StrMap *m, const char *key, uint32_t val);      /* false (unchanged) if present */
void strmap_clear(StrMap *m);
void strmap_free(StrMap *m);
uint32_t ir_add_state(Module *m, State s);
uint32_t ir_add_knob(Module *m, Knob k);
uint32_t ir_add_stat(Module *m, const char *name, Loc loc);
int32_t ir_find_knob(const Module *m, const char *name); /* -1 if absent */
int32_t ir_find_stat(const Module *m, const char *name); /* -1 if absent */
void ir_remove_func(Module *m, Func *f); /* drops f from m->funcs (memory stays in the arena) */
Func *ir_new_func(Module *m, const char *name, FuncKind kind, Loc loc);
Func *ir_find_func(const Module *m, const char *name);
void ir_func_add_arg(Module *m, Func *f, const char *name, Type t);
int64_t ir_config_get(const Module *m, const char *name, int64_t dflt);
void ir_config_set(Module *m, const char *name, int64_t v);

/* Appends an op defining a new value of type `t`; returns the value id. */
ValueId ir_emit(Module *m, Func *f, Opcode code, Type t, const ValueId *args, uint32_t nargs, Loc loc);
/* attention, attention_quest, attention_block: the ops that read and write a KV cache
 * (ia[0] heads, ia[1] kv_heads, ia[2] state). */
static inline bool ir_op_is_attention(Opcode c)
{
	return c == OP_ATTENTION || c == OP_ATTENTION_QUEST || c == OP_ATTENTION_BLOCK;
}
static inline Op *ir_def(Func *f, ValueId v) { return &f->ops[f->vals[v].def]; }
static inline Type ir_vtype(const Func *f, ValueId v) { return f->vals[v].type; }
void ir_compute_uses(Module *m, Func *f);
Module *ir_clone_module(const Module *m); /* deep copy; param data shared by copying */

/* ---- region.c: structured control flow (docs/ir.md, "Control flow") ----
 * 'if' opens a region, 'else' switches to its second branch, 'end' closes it; phis
 * right after an 'end' join one value from each branch.  ir_match_regions fills, for
 * every op, the index of its partner: if -> its else (or end when there is none),
 * else -> end, end -> its if, phi -> the if it joins; other ops get UINT32_MAX. */
bool ir_match_regions(const Func *f, uint32_t *partner, char *err, size_t nerr, uint32_t *bad_op);

/* ---- builder.c: typed constructors with shape inference (used by lowering and passes).
 * Each returns the new value, or IR_NO_VALUE after reporting a shape error at loc. */
typedef struct Builder {
	Module *m;
	Func *f;
	int32_t layer;   /* layer stamped on emitted ops (-1 outside layers) */
	Diag *diag;
} Builder;

ValueId ir_b_arg(Builder *b, uint32_t index, Loc loc);
ValueId ir_b_param(Builder *b, uint32_t param, Loc loc);
ValueId ir_b_const_f32(Builder *b, float v, Loc loc);
ValueId ir_b_const_i32(Builder *b, int32_t v, Loc loc);
/* ia: IR_NIA integers (or NULL), fa: IR_NFA floats (or NULL). */
ValueId ir_b_op(Builder *b, Opcode code, const ValueId *args, uint32_t nargs,
                const int64_t *ia, const float *fa, Loc loc);
/* Result type of an op from its operand types and attributes; false and a message in
 * err (if non-NULL) when operands do not fit.  Shared by builder, verifier and
 * shape inference so that all three agree. */
bool ir_infer_type(const Module *m, const Func *f, const Op *op, Type *out, char *err, size_t nerr);
/* Frequency of rotation pair j of a rope op with head size hd (its theta and scaling). */
double ir_rope_freq(const Op *op, int64_t j, int64_t hd);

/* ---- print.c / parse (eir_lexer.l, eir_parser.y): the textual IR (docs/ir.md) ---- */
#include <stdio.h>
void ir_print_module(FILE *out, const Module *m);
char *ir_print_module_str(const Module *m); /* malloc'ed */
Module *ir_parse_module(const SourceFile *src, Diag *d); /* NULL after reporting errors */
const char *ir_func_kind_name(FuncKind k);  /* "step", "prefill", "forward" */
int ir_func_kind_from_name(const char *s);  /* -1 if unknown */
/* Shortest decimal text that reads back to the same value; ".0" added to integers. */
char *ir_fmt_f32(float v, char *buf, size_t n);
char *ir_fmt_f64(double v, char *buf, size_t n);

/* ---- eir_build.c: what the .eir parser's actions call (eir_lexer.l and
 * eir_parser.y only).  Operand names are resolved when a function ends, so a use
 * before its definition parses and is left for the verifier to report. ---- */
typedef enum EirOperandKind { EO_VALUE, EO_INT, EO_FLOAT, EO_SYM } EirOperandKind;
typedef struct EirOperand {
	EirOperandKind kind;
	const char *text;  /* value name without '%', symbol name, or the number's text */
	Loc loc;
} EirOperand;
typedef struct EirList {     /* operands or attributes of one op line */
	EirOperand *items;
	const char **keys;       /* attribute keys (attributes only) */
	uint32_t n, cap;
} EirList;
typedef struct EirRef {      /* an operand name waiting for the end of its function */
	uint32_t op, slot;
	const char *name;
	Loc loc;
} EirRef;
typedef struct EirDef {      /* a value name defined in the current function */
	const char *name;
	ValueId v;
	Loc loc;
} EirDef;
typedef struct EirOpt {      /* a policy option as written: key = value */
	const char *key;
	PolicyVal val;
	Loc loc;                 /* of the key */
} EirOpt;
typedef struct EirOpts {     /* policy options being read */
	EirOpt *o;
	uint32_t n, cap;
} EirOpts;
typedef struct EirParser {
	Module *m;               /* created before parsing; strings live in its arena */
	Diag *diag;
	const char *file;        /* path used in locations */
	int line, col;           /* lexer position: next character */
	const char *last_text;   /* text of the last token (for "saw ..." messages) */
	Func *f;                 /* function being read */
	int32_t layer;           /* layer block being read, -1 outside */
	EirRef *refs; uint32_t nrefs, caprefs;
	EirDef *defs; uint32_t ndefs, capdefs;
	StrMap defidx;           /* value name -> index into defs (this function) */
	StrMap paramidx;         /* param name -> index into m->params */
	PolicyStmt *stmts; uint32_t nstmts, capstmts;
	int32_t lastparam;       /* the param eir_param just added, -1 if it failed */
} EirParser;

void eir_module(EirParser *p, const char *name, Loc loc);
void eir_module_layers(EirParser *p, const char *n, Loc loc);
void eir_module_const(EirParser *p, const char *name, const char *n, Loc loc);
void eir_module_string(EirParser *p, const char *key, const char *s, Loc loc);
void eir_param(EirParser *p, const char *name, Type t, const char *layer, const char *source,
               const char *hash, Loc loc);
/* `format F [group N] [activations A]` after a param: its storage format (quantised
 * when loaded) and, for q8/q4, its activations (int8 when not written). */
void eir_param_format(EirParser *p, const char *kw, const char *fmt, const char *gkw, const char *group,
                      const char *akw, const char *act, Loc loc);
void eir_state(EirParser *p, const char *name, const char *kind, EirList *attrs, const char *layer, Loc loc);
void eir_knob(EirParser *p, const char *name, const char *dtype, const char *dflt, EirList *attrs, Loc loc);
void eir_stat(EirParser *p, const char *name, Loc loc);
Type eir_type(EirParser *p, const char *dtype, Loc loc);
Type eir_type_dim(EirParser *p, Type t, const char *n, bool bound, Loc loc);
EirList *eir_list(EirParser *p);
EirList *eir_list_add(EirParser *p, EirList *l, const char *key, EirOperandKind k, const char *text, Loc loc);
void eir_policy(EirParser *p, const char *name, Loc loc);
void eir_policy_stmt(EirParser *p, const char *verb, const char *subject, EirOpts *opts, Loc loc);
EirOpts *eir_opts(EirParser *p);
EirOpts *eir_opts_add(EirParser *p, EirOpts *o, const char *key, PolicyVal v, Loc loc);
PolicyVal eir_pv_num(EirParser *p, const char *text, Loc loc);
PolicyVal eir_pv_frac(EirParser *p, const char *num, const char *den, Loc loc);
PolicyVal eir_pv_range(EirParser *p, const char *lo, const char *hi, Loc loc);
PolicyVal eir_pv_list(EirParser *p, PolicyVal l, const char *n, Loc loc); /* appends to a PV_LIST */
PolicyVal eir_pv_names(EirParser *p, PolicyVal l, const char *s, Loc loc); /* appends to a PV_NAMES */
PolicyVal eir_pv_word(EirParser *p, PolicyValKind k, const char *s);
void eir_func(EirParser *p, const char *kind, const char *name, Loc loc);
void eir_func_arg(EirParser *p, const char *name, Type t, Loc loc);
void eir_func_ret(EirParser *p, Type t);
void eir_func_end(EirParser *p);
void eir_layer(EirParser *p, const char *n, Loc loc); /* NULL n: the block ends */
void eir_op(EirParser *p, const char *dst, Loc dloc, const char *name, Loc loc, EirList *args, EirList *attrs,
            Type t, bool typed);
void eir_syntax_error(EirParser *p, Loc loc, const char *msg);
int64_t eir_int(EirParser *p, const char *text, Loc loc); /* reports overflow */
Module *eir_finish(EirParser *p, bool ok); /* the module, or NULL (freed) when !ok */

/* ---- verify.c ---- */
bool ir_verify(const Module *m, Diag *d); /* reports every problem; true if none */

/* ---- safetensors.c: the weights file reader (header parsed with cJSON) ---- */
typedef struct StTensor {
	const char *name;
	DType dtype;
	int rank;
	int64_t shape[IR_MAX_RANK];
	uint64_t begin, end;   /* byte offsets into the data section */
} StTensor;

typedef struct StFile {
	const char *path;
	uint8_t *bytes;  size_t size;   /* the whole file */
	bool mapped;                    /* bytes is a read-only mapping of the file (st_open) */
	size_t data_off;                /* start of the data section */
	StTensor *tensors; uint32_t ntensors;
} StFile;

/* Opens and validates; NULL with a message in err on any problem.  The file is
 * mapped; reads of the mapping (here and in st_read_f32) fail with a message instead
 * of SIGBUS when the file shrinks while it is mapped. */
StFile *st_open(const char *path, char *err, size_t nerr);
/* Tests only: when set, st_open calls it with the path between mapping the file and
 * reading it (to truncate the file there). */
extern void (*st_test_after_map)(const char *path);
StFile *st_open_mem(const uint8_t *bytes, size_t size, char *err, size_t nerr); /* copies */
void st_close(StFile *f);
const StTensor *st_find(const StFile *f, const char *name);
/* Converts a tensor to f32 into dst (numel floats).  From a mapped file, the pages
 * of the tensor are released afterwards, so loading all params never holds the file
 * and its copy in memory together. */
bool st_read_f32(const StFile *f, const StTensor *t, float *dst, char *err, size_t nerr);
/* Loads every param of m from the file, checking names, shapes and dtypes; reports
 * problems through d at each param's location.  progress, when not NULL, is called
 * with the bytes loaded so far and the total. */
bool ir_load_params(Module *m, const char *path, Diag *d);
bool ir_load_params_progress(Module *m, const char *path, Diag *d,
                             void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg);
/* From several files (a sharded checkpoint; ir_load_weights_progress): each tensor
 * must be in exactly one. */
bool ir_load_params_files(Module *m, const char *const *paths, uint32_t nfiles, Diag *d,
                          void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg);

/* ---- gguf.c: the GGUF reader (llama.cpp's format, versions 2 and 3) ---- */

typedef enum GgufValueType {
	GGUF_V_U8, GGUF_V_I8, GGUF_V_U16, GGUF_V_I16, GGUF_V_U32, GGUF_V_I32, GGUF_V_F32,
	GGUF_V_BOOL, GGUF_V_STRING, GGUF_V_ARRAY, GGUF_V_U64, GGUF_V_I64, GGUF_V_F64,
	GGUF_V_COUNT
} GgufValueType;

enum { GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q8_0 = 8, GGML_BF16 = 30 }; /* ggml type numbers */

typedef struct GgufKV {
	const char *key;
	uint32_t type;                /* GgufValueType */
	uint64_t u;                   /* scalar bits (little-endian value, zero-extended) */
	char *str;                    /* GGUF_V_STRING: the value, NUL-terminated */
	uint32_t arr_type;            /* GGUF_V_ARRAY: element type, count, payload offset */
	uint64_t arr_n, arr_off;
} GgufKV;

typedef struct GgufTensor {
	const char *name;
	int rank;
	int64_t shape[IR_MAX_RANK];   /* row-major, outermost first (GGUF's order reversed) */
	uint32_t type;                /* ggml type number */
	uint64_t offset, nbytes;      /* into the data section */
	uint64_t numel;
} GgufTensor;

typedef struct GgufFile {
	const char *path;
	uint8_t *bytes;  size_t size;  /* the whole file */
	uint32_t version;
	GgufKV *kv; uint32_t nkv;      /* sorted by key */
	GgufTensor *tensors; uint32_t ntensors;
	uint64_t alignment;
	size_t data_off;               /* start of the data section */
} GgufFile;

/* Opens and validates; NULL with a message in err on any problem. */
GgufFile *gguf_open(const char *path, char *err, size_t nerr);
GgufFile *gguf_open_mem(const uint8_t *bytes, size_t size, char *err, size_t nerr); /* copies */
void gguf_close(GgufFile *f);
const GgufKV *gguf_find_kv(const GgufFile *f, const char *key);
const GgufTensor *gguf_find_tensor(const GgufFile *f, const char *name);
bool gguf_kv_int(const GgufFile *f, const char *key, int64_t *out);   /* any integer type */
bool gguf_kv_float(const GgufFile *f, const char *key, double *out);  /* float or integer */
const char *gguf_kv_str(const GgufFile *f, const char *key);          /* NULL unless a string */
const char *gguf_type_name(uint32_t type);                            /* NULL if unknown */
/* Converts F32, F16, BF16, Q8_0 and Q4_0 tensors to f32 into dst (numel floats). */
bool gguf_read_f32(const GgufFile *f, const GgufTensor *t, float *dst, char *err, size_t nerr);

/* ---- weights.c: weights from several files ---- */

/* Loads every param of m from the union of the tensors of `paths`: safetensors or
 * GGUF files, Hugging Face shard indexes (model.safetensors.index.json) or model
 * directories (their index, else model.safetensors).  A tensor defined by two files
 * is an error naming it and both files. */
bool ir_load_weights(Module *m, const char *const *paths, uint32_t npaths, Diag *d);
/* The same, calling progress (when not NULL) with the bytes loaded so far and the total. */
bool ir_load_weights_progress(Module *m, const char *const *paths, uint32_t npaths, Diag *d,
                              void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg);
/* ---- quant.c: quantised storage formats (docs/quantization.md) ----
 * q8 and q4 quantise each row of a param [N, K] in groups of G consecutive elements
 * (the last group of a row is shorter when G does not divide K).  A group has an f16
 * scale d and unsigned codes c with a zero point z (128 for q8, 8 for q4); its value
 * is d * (c - z).  q8: d = max|x| / 127, c = z + round(x / d), c - z in [-127, 127].
 * q4: m = the element of largest magnitude, d = m / -8, c = z + round(x / d) clamped
 * to [0, 15].  bf16 rounds each element to nearest even.  The canonical layout of
 * Param.qdata: q8/q4 codes [N][K] (one byte each), then scales [N][ceil(K/G)] (u16
 * f16 bits); bf16: [N][K] u16. */
const char *ir_qformat_name(QFormat f);   /* "f32", "bf16", "q8", "q4" */
int ir_qformat_from_name(const char *s);  /* -1 if unknown */
const char *ir_actformat_name(ActFormat a);   /* "f32", "int8" */
int ir_actformat_from_name(const char *s);    /* -1 if unknown */
/* Whether params of format f may have activations a (int8 needs q8 or q4). */
static inline bool ir_actformat_fits(QFormat f, ActFormat a) { return a == AF_F32 || ((f == QF_Q8 || f == QF_Q4) && a == AF_INT8); }
/* The activations a q8/q4 param gets when none are named: int8 (docs/quantization.md). */
static inline ActFormat ir_actformat_default(QFormat f) { return (f == QF_Q8 || f == QF_Q4) ? AF_INT8 : AF_F32; }
int ir_qformat_zero(QFormat f);           /* zero point of the codes: 128, 8, else 0 */
/* Bytes per element of the format (q8 1, q4 0.5, bf16 2, f32 4), without scales. */
double ir_qformat_bytes(QFormat f);
static inline int64_t ir_quant_groups(int64_t k, int g) { return (k + g - 1) / g; }
uint16_t ir_f32_to_f16(float x);          /* round to nearest even */
float ir_f16_to_f32(uint16_t h);
uint16_t ir_f32_to_bf16(float x);         /* round to nearest even (NaN stays NaN) */
static inline float ir_bf16_to_f32(uint16_t h) { union { uint32_t u; float f; } v = { (uint32_t)h << 16 }; return v.f; }
/* bf16 rounded toward -inf (floor) and +inf (ceil): the Quest page bounds' rounding,
 * so bf16 bounds stay bounds of the f32 keys.  Finite results only: past the largest
 * finite bf16 (3.3895e38, so also +-inf) they saturate there, and a NaN gives -max
 * (floor) or +max (ceil).  The code generator emits the same bit operations. */
uint16_t ir_bf16_floor(float x);
uint16_t ir_bf16_ceil(float x);
/* Quantises p->data in place to `f` (group g for q8/q4): fills p->qdata and replaces
 * p->data by the dequantised values.  False with a message when p is not a loaded
 * f32 matrix or g is not a multiple of 8 in [8, 4096]. */
bool ir_quantize_param(Param *p, QFormat f, int g, char *err, size_t nerr);
/* Bytes of p->qdata (0 for f32). */
size_t ir_quant_bytes(const Param *p);
/* Codes and scales of row n of a q8/q4 param (canonical layout). */
const uint8_t *ir_quant_codes(const Param *p, int64_t n);
const uint16_t *ir_quant_scales(const Param *p, int64_t n);
/* With int8 activations (Param.act == AF_INT8), a q8/q4 linear quantises its input
 * and uses integer dot products; these two functions define it, for the interpreter
 * and as the reference of the compiled kernels (with f32 activations both compute
 * with the dequantised weights).  Activation quantisation: a
 * row x[K] in groups of g: s = max|x| / 127, q = round_even(x * (127 / max|x|)),
 * codes[K] (zero for an all-zero group), scales[ng], sums[ng] of the codes.  A NaN
 * in a group makes its scale NaN (and its code -127), so it reaches the result. */
void ir_quant_row(const float *x, int64_t k, int g, int8_t *codes, float *scales, int32_t *sums);
/* y = sum over groups of float(sum_k (c[n,k] - z) x_q[k]) * (d[n,g] * s[g]), in f32,
 * groups in order (fmaf): the value a compiled q8/q4 linear computes for output n. */
float ir_quant_dot(const Param *p, int64_t n, const int8_t *codes, const float *scales, const int32_t *sums);

/* ---- interp.c: the reference interpreter ---- */
typedef struct InterpState InterpState;
InterpState *interp_new(const Module *m);          /* allocates KV caches, zeroed */
void interp_free(InterpState *s);
void interp_reset(InterpState *s);
/* Runs entry `fn` with arguments given as raw buffers (i32 scalars/arrays); `seqlen`
 * is the actual length of the dynamic dimension (ignored when no arg is dynamic).
 * The first return value is written to out (numel floats, or i32 for argmax).
 * Returns false with a message in err on a runtime error (token out of range, ...). */
bool interp_run(InterpState *s, const char *fn, const int32_t *tokens, int64_t ntokens,
                int32_t pos, float *out, char *err, size_t nerr);
/* Optional hook called after every op with its result (calibration for pruning
 * scores): `rows` x `cols` floats (rows = sequence length, 1 for vectors). */
typedef void (*InterpOpHook)(void *user, const Func *f, const Op *op, const float *val,
                             int64_t rows, int64_t cols);
void interp_set_op_hook(InterpState *s, InterpOpHook hook, void *user);
/* Sets a knob by name; false when the module has no such knob. */
bool interp_set_knob(InterpState *s, const char *name, double v);
/* Fills the KV caches with NaN on creation and reset (and now): a read of a slot that
 * no path wrote reaches the result as NaN. */
void interp_set_poison(InterpState *s, bool on);
/* Counters since creation or reset: calls, tokens, layers run (per token, summed) and
 * the module's stat slots (Module.stats order). */
typedef struct InterpStats {
	int64_t calls, tokens, layers;
	int64_t *slots;          /* [Module.nstats] */
} InterpStats;
const InterpStats *interp_stats(const InterpState *s);
/* The K and V cache of state `state` ([ctx][kv_heads][head_dim] each: the
 * interpreter's own order, position-major, where a compiled context's caches are
 * head-major, elide_kv_layout_of); false when out
 * of range. */
bool interp_kv(const InterpState *s, uint32_t state, const float **k, const float **v);
/* Pages of a cache that keeps page bounds (State.page > 0; 0 otherwise). */
int64_t interp_npages(const State *st);
/* The page bounds of state `state`: [kv_heads][pages][2][head_dim] bf16 bits (the min
 * of the keys written into each page rounded toward -inf, then the max rounded toward
 * +inf: ir_bf16_floor, ir_bf16_ceil), or NULL when it keeps none. */
const uint16_t *interp_page_bounds(const InterpState *s, uint32_t state);
/* Pages attention_quest has attended to since interp_new, summed over layers, rows
 * and kv heads (every page when it selects them all). */
int64_t interp_pages_visited(const InterpState *s);
/* The key cache of state `state`: [ctx][kv_heads][head_dim]. */
const float *interp_cache_keys(const InterpState *s, uint32_t state);

#endif
