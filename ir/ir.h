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

enum { OPF_PURE = 1, OPF_ELEMWISE = 2, OPF_LEAF = 4 };

typedef enum Opcode {
#define OP(e, name, arity, flags) OP_##e,
#include "ir/ops.def"
#undef OP
	OP_COUNT
} Opcode;

extern const char *const ir_op_names[OP_COUNT];
extern const int ir_op_arity[OP_COUNT]; /* -1 = variadic */
extern const unsigned ir_op_flags[OP_COUNT];
int ir_op_from_name(const char *s); /* -1 if unknown */

/* ---- module.c: values, ops, functions, params, state, policy ---- */

typedef uint32_t ValueId;
#define IR_NO_VALUE UINT32_MAX
#define IR_MAX_OPERANDS 8

typedef struct Op {
	Opcode code;
	ValueId dst;                 /* the value this op defines */
	uint8_t nargs;               /* operands used (<= IR_MAX_OPERANDS) */
	ValueId args[IR_MAX_OPERANDS];
	int64_t ia[4];               /* integer attributes, meaning per op (ops.def) */
	float fa[2];                 /* float attributes, meaning per op (ops.def) */
	int32_t layer;               /* layer region index, -1 outside any layer */
	Loc loc;                     /* source location (DSL or .eir) */
} Op;

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

/* Storage format of a param (quant.c, docs/quantization.md).  Every format has a
 * dequantised f32 value per element, which Param.data holds once quantised. */
typedef enum QFormat {
	QF_F32,   /* binary32 */
	QF_BF16,  /* bfloat16, rounded to nearest even */
	QF_Q8,    /* int8 codes, one f16 scale per group along the input dimension */
	QF_Q4,    /* 4-bit codes with offset 8, one f16 scale per group */
	QF_COUNT
} QFormat;

typedef struct Param {
	const char *name;    /* IR name, e.g. "wq.3" */
	const char *source;  /* tensor name in the weights file, e.g. "model.layers.3.self_attn.q_proj.weight" */
	Type type;           /* declared (and, after pruning, current) shape */
	int32_t layer;       /* layer the param belongs to, -1 if global */
	float *data;         /* f32 contents once loaded (NULL before), dequantised when quantised; owned */
	uint64_t hash;       /* content hash of the loaded f32 data (0 when not loaded) */
	QFormat format;      /* storage format (QF_F32 unless quantised) */
	int32_t group;       /* q8/q4: elements per scale along the last axis */
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
	Loc loc;
} State;

/* Policies are kept generic: a statement has a verb ("prune", "skip", "exit",
 * "attend", "drop"), a subject ("ffn_neuron", "kv_group", "decode", ...) and options.
 * Passes read the options they understand by key; the front end checks ranges. */
typedef enum PolicyValKind {
	PV_NUM,    /* num */
	PV_FRAC,   /* num/den written as a fraction, e.g. 5/6 (num holds the quotient) */
	PV_RANGE,  /* lo..hi, half open */
	PV_LIST,   /* ints[0..nints) */
	PV_STRING, /* str */
	PV_IDENT,  /* str: a bare word such as "maw", "propagate" */
	PV_CALL,   /* str(ints...) / str(nums...) e.g. quest(page 16, budget 64) kept as sub-options */
} PolicyValKind;

typedef struct PolicyOpt PolicyOpt;
typedef struct PolicyVal {
	PolicyValKind kind;
	double num;
	int64_t lo, hi;           /* PV_RANGE */
	int64_t ints[64]; uint32_t nints; /* PV_LIST */
	const char *str;          /* PV_STRING, PV_IDENT, PV_CALL name */
	PolicyOpt *sub; uint32_t nsub; /* PV_CALL options */
	bool is_int;              /* PV_NUM written without '.' */
} PolicyVal;

struct PolicyOpt {
	const char *key;          /* "keep", "score", "layers", "threshold", ... */
	PolicyVal val;
	Loc loc;
};

typedef struct PolicyStmt {
	const char *verb;         /* "prune", "skip", "exit", "attend", "drop" */
	const char *subject;      /* "ffn_neuron", "head", "kv_group", "layer", "ffn", ... (may be NULL) */
	PolicyOpt *opts; uint32_t nopts;
	Loc loc;
} PolicyStmt;

typedef struct Policy {
	const char *name;         /* NULL or "dense" means no policy */
	PolicyStmt *stmts; uint32_t nstmts;
	Loc loc;
} Policy;

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
	Policy *policy;            /* NULL: dense */
	const char *weights_path;  /* safetensors file to load params from (NULL until given) */
	const char *manifest_notes;/* text passes add for the manifest (e.g. what pruning removed) */
} Module;

Module *ir_new_module(const char *name);
void ir_free_module(Module *m);
uint32_t ir_add_param(Module *m, const char *name, const char *source, Type t, int32_t layer, Loc loc);
int32_t ir_find_param(const Module *m, const char *name); /* -1 if absent */
uint32_t ir_add_state(Module *m, State s);
Func *ir_new_func(Module *m, const char *name, FuncKind kind, Loc loc);
Func *ir_find_func(const Module *m, const char *name);
void ir_func_add_arg(Module *m, Func *f, const char *name, Type t);
int64_t ir_config_get(const Module *m, const char *name, int64_t dflt);
void ir_config_set(Module *m, const char *name, int64_t v);

/* Appends an op defining a new value of type `t`; returns the value id. */
ValueId ir_emit(Module *m, Func *f, Opcode code, Type t, const ValueId *args, uint32_t nargs, Loc loc);
static inline Op *ir_def(Func *f, ValueId v) { return &f->ops[f->vals[v].def]; }
static inline Type ir_vtype(const Func *f, ValueId v) { return f->vals[v].type; }
void ir_compute_uses(Module *m, Func *f);
Module *ir_clone_module(const Module *m); /* deep copy; param data shared by copying */

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
ValueId ir_b_op(Builder *b, Opcode code, const ValueId *args, uint32_t nargs,
                const int64_t *ia, const float *fa, Loc loc);
/* Result type of an op from its operand types and attributes; false and a message in
 * err (if non-NULL) when operands do not fit.  Shared by builder, verifier and
 * shape inference so that all three agree. */
bool ir_infer_type(const Module *m, const Func *f, const Op *op, Type *out, char *err, size_t nerr);

/* ---- print.c / parse (eir_lexer.l, eir_parser.y): the textual IR (docs/ir.md) ---- */
#include <stdio.h>
void ir_print_module(FILE *out, const Module *m);
char *ir_print_module_str(const Module *m); /* malloc'ed */
Module *ir_parse_module(const SourceFile *src, Diag *d); /* NULL after reporting errors */
/* Attribute names of each op's ia[]/fa[] slots in the text (NULL: printed as iaK /
 * faK when non-zero).  ORDER: ops.def. */
typedef struct IrAttrSpec {
	const char *ia[4];
	const char *fa[2];
} IrAttrSpec;
extern const IrAttrSpec ir_op_attrs[OP_COUNT];
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
typedef struct EirOpts {     /* policy options being read */
	PolicyOpt *o;
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
	PolicyStmt *stmts; uint32_t nstmts, capstmts;
	int32_t lastparam;       /* the param eir_param just added, -1 if it failed */
} EirParser;

void eir_module(EirParser *p, const char *name, Loc loc);
void eir_module_layers(EirParser *p, const char *n, Loc loc);
void eir_module_const(EirParser *p, const char *name, const char *n, Loc loc);
void eir_module_string(EirParser *p, const char *key, const char *s, Loc loc);
void eir_param(EirParser *p, const char *name, Type t, const char *layer, const char *source,
               const char *hash, Loc loc);
/* `format F [group N]` after a param: its storage format (quantised when loaded). */
void eir_param_format(EirParser *p, const char *kw, const char *fmt, const char *gkw, const char *group, Loc loc);
void eir_state(EirParser *p, const char *name, const char *kind, EirList *attrs, const char *layer, Loc loc);
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
PolicyVal eir_pv_word(EirParser *p, PolicyValKind k, const char *s, EirOpts *sub);
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
	size_t data_off;                /* start of the data section */
	StTensor *tensors; uint32_t ntensors;
} StFile;

/* Opens and validates; NULL with a message in err on any problem. */
StFile *st_open(const char *path, char *err, size_t nerr);
StFile *st_open_mem(const uint8_t *bytes, size_t size, char *err, size_t nerr); /* copies */
void st_close(StFile *f);
const StTensor *st_find(const StFile *f, const char *name);
/* Converts a tensor to f32 into dst (numel floats). */
bool st_read_f32(const StFile *f, const StTensor *t, float *dst, char *err, size_t nerr);
/* Loads every param of m from the file, checking names, shapes and dtypes; reports
 * problems through d at each param's location. */
bool ir_load_params(Module *m, const char *path, Diag *d);

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
int ir_qformat_zero(QFormat f);           /* zero point of the codes: 128, 8, else 0 */
/* Bytes per element of the format (q8 1, q4 0.5, bf16 2, f32 4), without scales. */
double ir_qformat_bytes(QFormat f);
static inline int64_t ir_quant_groups(int64_t k, int g) { return (k + g - 1) / g; }
uint16_t ir_f32_to_f16(float x);          /* round to nearest even */
float ir_f16_to_f32(uint16_t h);
uint16_t ir_f32_to_bf16(float x);         /* round to nearest even (NaN stays NaN) */
static inline float ir_bf16_to_f32(uint16_t h) { union { uint32_t u; float f; } v = { (uint32_t)h << 16 }; return v.f; }
/* Quantises p->data in place to `f` (group g for q8/q4): fills p->qdata and replaces
 * p->data by the dequantised values.  False with a message when p is not a loaded
 * f32 matrix or g is not a multiple of 8 in [8, 4096]. */
bool ir_quantize_param(Param *p, QFormat f, int g, char *err, size_t nerr);
/* Bytes of p->qdata (0 for f32). */
size_t ir_quant_bytes(const Param *p);
/* Codes and scales of row n of a q8/q4 param (canonical layout). */
const uint8_t *ir_quant_codes(const Param *p, int64_t n);
const uint16_t *ir_quant_scales(const Param *p, int64_t n);
/* With int8 activations (elide compile --int8-activations), a q8/q4 linear quantises
 * its input and uses integer dot products; these two functions are the reference of
 * those kernels (the interpreter computes with the dequantised weights and f32
 * activations).  Activation quantisation: a
 * row x[K] in groups of g: s = max|x| / 127, q = round_even(x * (127 / max|x|)),
 * codes[K] (zero for an all-zero group), scales[ng], sums[ng] of the codes. */
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

#endif
