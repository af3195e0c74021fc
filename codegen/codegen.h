/* codegen.h - LLVM code generation for elide modules, one header for codegen/,
 * divided into per-file sections.  cg_compile() lowers every entry of a Module to
 * one LLVM module (kernels specialised to the static shapes, explicit vector IR
 * sized from the target's features, weights pre-packed into the layout the kernels
 * read, a liveness-planned arena), plus the context API of the generated header.
 * The result is then emitted as object/asm/LLVM IR files, a header, a weight blob
 * and a JSON manifest (emit.c), or run in process through ORC (jit.c). */
#ifndef ELIDE_CODEGEN_H
#define ELIDE_CODEGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "ir/ir.h"
#include "runtime/elide_rt.h" /* status codes, blob, pool: what generated code calls */

/* ---- target.c: target machine and kernel geometry from the target's features ---- */

typedef enum CgDot {          /* how the q8/q4 kernels multiply int8 codes */
	CG_DOT_GENERIC,           /* widened integer multiplies and adds (any target) */
	CG_DOT_VNNI,              /* x86 vpdpbusd: AVX512-VNNI (512 bits), AVX-VNNI or AVX512VL (256) */
	CG_DOT_SDOT,              /* AArch64 sdot (the dotprod extension) */
} CgDot;

typedef struct CgTarget {
	char *triple;             /* normalised target triple */
	char *cpu;                /* CPU name ("" = generic) */
	char *features;           /* feature string, e.g. "+avx2,+fma" */
	LLVMTargetMachineRef tm;
	LLVMTargetDataRef td;
	int vec;                  /* floats per vector register: 16 (AVX-512), 8 (AVX2), 4 */
	int nvec;                 /* vectors per weight panel: panel width NR = vec * nvec */
	int mr;                   /* rows of the GEMM micro-kernel */
	int qmr;                  /* rows of the quantised (integer) micro-kernel */
	CgDot dot;                /* integer dot product of the q8/q4 kernels */
	bool f16cvt;              /* f16 -> f32 vector conversion in hardware (F16C, AArch64) */
	bool is_host;
} CgTarget;

/* NULL (after a message in err) when the triple is unknown or the machine cannot be
 * made.  triple/cpu/features NULL mean the host's. */
CgTarget *cg_target_new(const char *triple, const char *cpu, const char *features,
                        int opt_level, char *err, size_t nerr);
void cg_target_free(CgTarget *t);
/* The float vector width of the kernels for a CPU and feature string: 16 with
 * AVX-512, 8 with AVX2, 4 otherwise. */
int cg_target_vec_width(const char *triple, const char *cpu, const char *features);
void cg_llvm_init(void); /* registers LLVM's targets (once; cg_target_new does it) */

/* ---- target_tables.c: LLVM's CPU and feature tables of a target ---- */
/* Checks a CPU name and a feature list ("+a,-b") against the tables of triple (a
 * normalised triple); false with a message naming the closest known name. */
bool cg_target_check(const char *triple, const char *cpu, const char *features, char *err, size_t nerr);
/* --cpu=help / --features=help: the tables of triple (NULL: the host's), in elide's
 * words; false with a message when LLVM does not know the target or has no table. */
bool cg_target_print_cpus(FILE *out, const char *triple, char *err, size_t nerr);
bool cg_target_print_features(FILE *out, const char *triple, char *err, size_t nerr);

/* Whether the target's objects are ELF (not Mach-O, COFF, wasm, XCOFF, GOFF). */
bool cg_target_is_elf(const CgTarget *t);
static inline int cg_target_nr(const CgTarget *t) { return t->vec * t->nvec; }

/* ---- pack.c: weight packing and the blob ---- */

typedef enum CgLayout {
	CG_ROWMAJOR, /* the tensor as declared, row-major */
	CG_PANEL,    /* linear W[N,K] as panels [ceil(N/NR)][K][NR], zero padded */
	CG_ROPE,     /* rope table [ctx][hd/2] of (cos, sin) pairs, computed in double */
	CG_QPANEL,   /* q8/q4 linear W[N,K]: per panel of NR rows, per group: NR f16 scales,
	              * then codes in blocks of 4 k by NR rows ([k/4][NR][4] bytes; q4: two
	              * blocks per byte, low nibble the first), K padded to whole groups */
	CG_QROWS,    /* q8/q4 embedding table: per row, its f16 scales then its codes (q4:
	              * two per byte, low nibble the even k) */
	CG_BPANEL,   /* bf16 linear W[N,K] as panels [ceil(N/NR)][K][NR] of bf16 */
	CG_BROWS,    /* bf16 table, row-major */
} CgLayout;

/* Bytes of one group of a CG_QPANEL region, and of one row of a CG_QROWS region. */
int64_t cg_qpanel_group_bytes(QFormat f, int group, int nr);
int64_t cg_qrows_row_bytes(QFormat f, int group, int64_t k);

typedef struct CgRegion {     /* one tensor of the packed weight blob */
	CgLayout layout;
	int32_t param;            /* param index (-1 for a rope table) */
	int64_t a, b;             /* rope: positions and head_dim; unused otherwise */
	double theta;             /* rope base */
	float scale[3];           /* rope scaling: factor, low and high frequency factors (ops.def) */
	int64_t orig;             /* rope scaling: original context (0: linear or none) */
	uint64_t offset;          /* byte offset from the start of the payload (64-aligned) */
	uint64_t size;            /* bytes */
} CgRegion;

typedef struct CgWeights {
	CgRegion *regions; uint32_t nregions, capregions;
	uint64_t size;            /* payload bytes (sum of aligned regions) */
} CgWeights;

/* Finds or adds a region; returns its index. */
uint32_t cg_weights_region(CgWeights *w, CgLayout layout, int32_t param, int64_t a, int64_t b,
                           const Op *rope, const Module *m, int nr);
/* Fills the payload (size bytes, zeroed by the caller) from the params' data. */
bool cg_weights_pack(const CgWeights *w, const Module *m, int nr, uint8_t *payload,
                     char *err, size_t nerr);
/* Builds the whole blob (runtime header + payload) in malloc'ed memory. */
uint8_t *cg_blob_build(const CgWeights *w, const Module *m, int nr, uint64_t model_hash,
                       size_t *size, char *err, size_t nerr);
typedef struct CgResult CgResult;
/* The blob of r in memory (r->blob, built on the first call and kept; r->blob_size
 * bytes), for the JIT and tests; NULL with a message when it cannot be built. */
const uint8_t *cg_blob(CgResult *r, char *err, size_t nerr);
/* Streams r's blob into file descriptor fd at byte offset `at` (pwrite; header last),
 * holding only a small buffer; progress goes to ph (may be NULL). */
bool cg_blob_write(const CgResult *r, int fd, uint64_t at, const char *shown, Phases *ph, char *err, size_t nerr);

/* ---- plan.c: fusion decisions and the memory plan of one function ---- */

typedef struct CgFuse {       /* per op of a function */
	bool skip;                /* folded into an earlier op's epilogue */
	int32_t unary;            /* op index of the epilogue unary op (silu, gelu, tanh, scale) or -1 */
	int32_t binary;           /* op index of the epilogue binary op (add, sub, mul) or -1 */
	bool bin_swap;            /* binary operand order: other OP acc instead of acc OP other */
	bool other_row;           /* the other operand is one row [N] added to every row (bias) */
	ValueId other;            /* operand of the epilogue binary op */
	ValueId out;              /* value the op (with its epilogue) finally defines */
} CgFuse;

typedef struct CgPlan {
	CgFuse *fuse;             /* [nops] */
	int64_t *offset;          /* [nvals] arena byte offset, -1 when no buffer */
	uint64_t size;            /* arena bytes this function needs */
	int64_t qscratch;         /* arena offset of the quantised activations of a q8/q4
	                           * linear (codes, scales, sums; one linear at a time), -1 if none */
} CgPlan;

void cg_plan_func(const Module *m, const Func *f, bool fuse, CgPlan *p);
/* Per op, the op that opens its innermost branch ('if' or 'else'), UINT32_MAX at the
 * top level: fusion stays within one branch. */
void cg_branch_scopes(const Func *f, uint32_t *scope);
/* Scratch bytes op needs for its quantised activations (0 unless a linear of a
 * q8/q4 param with int8 activations, Param.act):
 * codes [rows][Kp] (Kp: K padded to whole groups), then scales and sums [rows][ng],
 * each part 64-byte aligned. */
int64_t cg_qscratch_bytes(const Module *m, const Func *f, const Op *op);
static inline int64_t cg_qscratch_codes(int64_t rows, int64_t kp) { return (rows * kp + 63) & ~(int64_t)63; }
void cg_plan_free(CgPlan *p);
/* Rows of a value (the dynamic length T when dyn0) and its last-axis extent. */
int64_t cg_static_rows(Type t);
int64_t cg_cols(Type t);

/* ---- lower.c: the LLVM module ---- */

typedef struct CgOptions {
	const char *triple, *cpu, *features; /* NULL: host */
	int opt_level;            /* 0..3 */
	bool embed_weights;       /* the blob goes into the object's read-only data */
	bool fuse;                /* fuse elementwise ops into the producing kernel */
	bool embed_patch;         /* with embed_weights, on ELF targets: reserve a zero-filled
	                           * section and write the blob into the object file afterwards
	                           * (fast, never holds the blob in memory; for obj output only) */
	Phases *phases;           /* phase times and progress (NULL: none) */
} CgOptions;

typedef struct CgLayerCost {  /* manifest figures of one layer region (or -1: outside) */
	int32_t layer;
	double flops;             /* per token attending to one key (decode at position 0) */
	double flops_per_key;     /* added for each further key attended (attention) */
	double kv_bytes_per_key;  /* KV cache bytes read per key attended */
	double bytes;             /* weight bytes read per token */
	const Op *attn;           /* the layer's attention op on the full path (NULL: none) */
} CgLayerCost;

typedef struct CgPath {      /* manifest figures of one path through an entry, ending in a 'ret' */
	uint32_t ret;             /* op index of the 'ret' */
	int32_t site;             /* exit site (ia[0] of the innermost enclosing 'if' that has one), 0: none */
	int64_t layers;           /* layers run on the path (the ret's ia[0], or all the model's) */
	double flops;             /* per token (attending to one key) */
	double flops_per_key;     /* per token, for each further key attended */
	double kv_bytes_per_key;  /* KV cache bytes read per key attended */
	double bytes;             /* weight bytes read per token */
} CgPath;

typedef struct CgEntry {
	const char *name;
	FuncKind kind;
	uint64_t arena;           /* bytes its plan needs */
	double flops, bytes;      /* per token, on the full path (the one ending in the last 'ret'; flops: attending to one key) */
	double flops_per_key;     /* per token on the full path, for each further key attended */
	double kv_bytes_per_key;  /* KV cache bytes read per key attended, on the full path */
	CgLayerCost *layers; uint32_t nlayers; /* per layer region, on the full path */
	CgPath *paths; uint32_t npaths; /* every path that ends in a 'ret', in op order */
} CgEntry;

struct CgResult {
	Module *m;
	CgTarget *target;
	LLVMContextRef llctx;
	LLVMModuleRef mod;
	CgWeights weights;
	uint64_t model_hash;      /* hash of the model, shapes, layouts: checked against the blob */
	uint64_t abi_hash;        /* hash of the generated API */
	uint64_t arena_size, state_size, ctx_size, weights_size; /* weights_size: whole blob */
	uint64_t knob_off;        /* context offset of the knobs: [Module.nknobs] doubles */
	uint64_t stat_off;        /* context offset of the stat slots: [Module.nstats] u64 */
	uint64_t arena_off;       /* context offset of the arena (64-aligned); the state follows it */
	uint64_t *state_off;      /* [nstates] byte offset of each cache in the state region */
	CgEntry *entries; uint32_t nentries;
	uint8_t *blob;            /* the blob in memory: cg_blob() builds it on demand */
	size_t blob_size;         /* bytes of the blob (header + payload) */
	bool embed_patch;         /* the object holds a zero-filled section for the blob, which
	                           * cg_write_outputs fills in the written file (ELF only) */
	Phases *phases;           /* CgOptions.phases */
};

/* Context header: fixed fields in front of arena and state (offsets in bytes). */
enum {
	CG_CTX_MAGIC = 0,      /* u64 */
	CG_CTX_WEIGHTS = 8,    /* ptr: packed payload in use (NULL: none loaded) */
	CG_CTX_BUSY = 16,      /* u64: 1 while a call runs (a second thread's call gets ELIDE_ERR_BUSY) */
	CG_CTX_PFOR = 24,      /* ptr: parallel-for hook (NULL: serial) */
	CG_CTX_POOL = 32,      /* ptr: hook's first argument */
	CG_CTX_OWNED_POOL = 40,/* ptr: runtime pool made by set_threads, destroyed by destroy */
	CG_CTX_OWNED_MEM = 48, /* ptr: context memory from create, freed by destroy */
	CG_CTX_STATS = 64,     /* CG_NSTATS u64 counters */
	CG_NSTATS = 4,         /* calls, tokens, layers run, weight loads */
	CG_CTX_MAPPING = 96,   /* elide_mapping (24 bytes) of a blob file, unmapped by destroy */
	CG_CTX_HDR = 128,      /* the knobs, then the stat slots, then the arena (64-aligned) */
};
#define CG_CTX_MAGIC_VALUE 0x454c494445435458ull /* "ELIDECTX" */

CgResult *cg_compile(Module *m, const CgOptions *o, Diag *d);
void cg_result_free(CgResult *r);

/* ---- internal to codegen/: the lowering state shared by lower.c, kernels.c,
 * ops.c, glue.c and their helpers (llvm_util.c, values.c).  Calls go one way:
 * lower.c -> kernels.c, ops.c -> values.c -> llvm_util.c ---- */
typedef struct CgLoop {
	LLVMBasicBlockRef pre, head, body, exit;
	LLVMValueRef iv, step;
} CgLoop;

typedef struct CgBranch {     /* an open region of the entry being lowered (control.c) */
	uint32_t open;               /* op index of its 'if' */
	LLVMBasicBlockRef other;     /* the second branch: the 'else' ops, or just the copies of the phis' operand 1 */
	LLVMBasicBlockRef join;      /* after 'end': both branches meet */
} CgBranch;

typedef struct Cg {
	CgResult *r;
	Module *m;
	CgTarget *t;
	LLVMContextRef c;
	LLVMModuleRef mod;
	LLVMBuilderRef b;            /* builder of the function being generated */
	LLVMValueRef fn;             /* that function */
	LLVMValueRef body_fn;        /* the entry function being lowered: its loops (one per op and
	                              * layer, dozens of copies of the same shapes) are marked not
	                              * to be unrolled or interleaved, which keeps -O3 from growing
	                              * the entry tenfold (LLVM time 6 s -> 1 s on a 134 M model);
	                              * kernels and tasks, compiled once per shape, are unrolled */
	LLVMTypeRef f32, i32, i64, i8, i1, ptr, voidt, vt; /* vt: <vec x float> */
	LLVMTypeRef task_ty;         /* void (ptr args, i64 begin, i64 end) */
	LLVMTypeRef pfor_ty;         /* void (ptr pool, i64 n, ptr task, ptr args) */
	char **knames; LLVMValueRef *kfns; uint32_t nk, capk; /* kernel cache by key */
	/* entry being lowered */
	const Func *f;
	CgPlan plan;
	LLVMValueRef ctx, wts, arena, state, argblk, nrows, out;
	LLVMValueRef *argv;          /* [f->nargs] scalar value or pointer */
	LLVMBasicBlockRef fail;      /* returns the status in `failst` */
	LLVMValueRef failst;         /* i32 alloca */
	int64_t rope_len;            /* positions of the rope tables */
	uint32_t *partner;           /* [f->nops] region matching (ir_match_regions) */
	CgBranch *branches;        /* [f->nops] stack of open regions (control.c) */
	uint32_t nbranches;
	bool fuse;                   /* CgOptions.fuse */
	Diag *d;                     /* where unsupported ops are reported */
} Cg;

/* llvm_util.c: LLVM helpers */
LLVMValueRef cg_i64(Cg *g, int64_t v);
LLVMValueRef cg_iadd(Cg *g, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_isub(Cg *g, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_imulc(Cg *g, LLVMValueRef a, int64_t c);
LLVMValueRef cg_smin(Cg *g, LLVMValueRef a, LLVMValueRef b); /* signed i64 */
LLVMValueRef cg_smax(Cg *g, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_ld64(Cg *g, LLVMValueRef p);                  /* i64 load, align 8 */
void cg_st64(Cg *g, LLVMValueRef v, LLVMValueRef p);          /* 8-byte store */
LLVMValueRef cg_ldf(Cg *g, LLVMValueRef base, LLVMValueRef idx); /* f32 base[idx] */
LLVMTypeRef cg_f64(Cg *g);
LLVMValueRef cg_f64c(Cg *g, double v);
LLVMValueRef cg_i32c(Cg *g, int32_t v);
LLVMValueRef cg_f32c(Cg *g, double v);
LLVMValueRef cg_splat(Cg *g, LLVMValueRef s, int n);
LLVMValueRef cg_alloca(Cg *g, LLVMTypeRef ty, const char *name);
LLVMValueRef cg_gep(Cg *g, LLVMTypeRef elt, LLVMValueRef base, LLVMValueRef idx);
LLVMValueRef cg_gepb(Cg *g, LLVMValueRef base, int64_t bytes); /* base + bytes */
LLVMValueRef cg_load(Cg *g, LLVMTypeRef ty, LLVMValueRef p, unsigned align);
void cg_store(Cg *g, LLVMValueRef v, LLVMValueRef p, unsigned align);
LLVMValueRef cg_fast(LLVMValueRef v); /* reassoc, contract, nsz */
LLVMValueRef cg_call_intr(Cg *g, const char *name, LLVMTypeRef ovl, LLVMValueRef *args, unsigned n);
CgLoop cg_loop_begin(Cg *g, LLVMValueRef lo, LLVMValueRef hi, LLVMValueRef step, const char *name);
void cg_loop_end(Cg *g, CgLoop *l);
LLVMValueRef cg_exp(Cg *g, LLVMValueRef x);   /* f32 or vector of f32 */
LLVMValueRef cg_erf(Cg *g, LLVMValueRef x);
LLVMValueRef cg_tanh(Cg *g, LLVMValueRef x);
/* Applies the unary op `op` (silu, gelu, tanh, scale) to x (f32 or vector).  The
 * instruction that yields an elementwise op's result carries no fast-math flag, so
 * LLVM never reassociates across ops: scale, add, sub and mul are IEEE f32 and equal
 * the interpreter's bit for bit. */
LLVMValueRef cg_unary(Cg *g, const Op *op, LLVMValueRef x);
LLVMValueRef cg_binary(Cg *g, Opcode code, LLVMValueRef a, LLVMValueRef b);
/* The task function void(ptr, i64, i64) of kernel `key`: when the module already has
 * it, *fn is that function and the result false; else true, with *fn a new function
 * (cached under key) whose body the caller builds from its entry block: the caller's
 * builder is saved into *save, and cg_task_end closes the body and restores it. */
typedef struct CgSave { LLVMBuilderRef b; LLVMValueRef fn; } CgSave;
bool cg_task_open(Cg *g, const char *key, LLVMValueRef *fn, CgSave *save);
void cg_task_end(Cg *g, CgSave *save);
/* The vector width of an attention head of hd floats: the target's width, halved
 * until it divides hd. */
int cg_head_vec(const Cg *g, int64_t hd);
LLVMValueRef cg_slot_ptr(Cg *g, LLVMValueRef blk, int slot);   /* load ptr slot */
LLVMValueRef cg_slot_i64(Cg *g, LLVMValueRef blk, int slot);
void cg_slot_set(Cg *g, int slot, LLVMValueRef v);              /* into g->argblk */
/* Calls task over [0, n) through the context's parallel-for hook (serial without). */
void cg_pfor(Cg *g, LLVMValueRef task, LLVMValueRef n);

/* kernels.c: linear (GEMV for one row, register-tiled GEMM otherwise) */
void cg_lower_linear(Cg *g, uint32_t opi);
/* lower.c: gives back the context's busy flag before an entry returns */
void cg_release_busy(Cg *g);
/* ops.c: every other op */
void cg_lower_op(Cg *g, uint32_t opi);
/* ops.c: copies rows [rows x kv width] of k and v into cache `state` at positions pos..
 * (pos an i64); *K and *V (may be NULL) receive the cache's base pointers. */
void cg_cache_write(Cg *g, int64_t state, LLVMValueRef k, LLVMValueRef v, LLVMValueRef rows, LLVMValueRef pos,
                    LLVMValueRef *K, LLVMValueRef *V);
/* control.c: if, else, end, phi, ret, select, stat (structured control flow as basic
 * blocks, phi copies on the edges, returns with their statistics) */
void cg_lower_control(Cg *g, uint32_t opi);
/* Adds `by` (i64) to the u64 counter at context byte offset `off`. */
void cg_bump_counter(Cg *g, uint64_t off, LLVMValueRef by);
/* The run-time value of knob op `op`, converted to its type (f32 or i32). */
LLVMValueRef cg_knob_value(Cg *g, const Op *op);
/* predicates.c: cmp, and, or, not, margin, maxprob, entropy, cosine, decay */
void cg_lower_predicate(Cg *g, uint32_t opi);
/* values.c: values, weight regions and failure checks of the entry being lowered */
LLVMValueRef cg_val_ptr(Cg *g, ValueId v);    /* buffer, argument array or weights */
LLVMValueRef cg_val_scalar(Cg *g, ValueId v); /* scalar argument, constant or loaded */
LLVMValueRef cg_rows(Cg *g, Type t);          /* i64 rows (T when dyn0) */
LLVMValueRef cg_len(Cg *g, Type t);           /* i64 elements of an index vector: 1, T or dims[0] */
/* Whether scalar v is known before any op runs (an argument or a constant), so the
 * entry's up-front checks can test it. */
bool cg_known_early(const Func *f, ValueId v);
/* Branches to the entry's failure exit with `status` when cond (i1) holds. */
void cg_fail_if(Cg *g, LLVMValueRef cond, int status);
/* Fails with `status` unless 0 <= start (i32) and start + n (i64) <= bound. */
void cg_fail_outside(Cg *g, LLVMValueRef start, LLVMValueRef n, int64_t bound, int status);
/* Whether embed op's indices are positions(tokens, start) with a start known early. */
bool cg_embeds_positions(const Func *f, const Op *op);
/* Whether the entry's up-front checks cover the indices of embed op (token
 * arguments, positions from an early start); else the embed checks each index. */
bool cg_embed_checked_early(const Func *f, const Op *op);
LLVMValueRef cg_param_ptr(Cg *g, uint32_t param, CgLayout layout);
LLVMValueRef cg_rope_ptr(Cg *g, int64_t hd, const Op *rope);
/* In-place softmax of n floats at row; acc is an f32 alloca. */
void cg_softmax_row(Cg *g, LLVMValueRef row, LLVMValueRef n, LLVMValueRef acc);
/* q . row for a query head held in nv vectors of vw floats (qv): the attention scores'
 * dot product, dense and sparse alike. */
LLVMValueRef cg_dot_row(Cg *g, LLVMValueRef *qv, int nv, int vw, LLVMValueRef row);
/* The dense attention task over (row, head) pairs: slots 0 q, 1 K, 2 V, 3 out, 4 T,
 * 5 pos (-1: no cache); maxkeys bounds the keys of one row; cache_ctx > 0: K and V
 * are a cache of that context, head-major (elide_kv_layout_of), else rows. */
LLVMValueRef cg_attention_task(Cg *g, int64_t heads, int64_t kvh, int64_t hd, int64_t maxkeys, int64_t cache_ctx);

/* ---- attention_sparse.c: page bounds of a cache (elide_kv_layout_of), attention_quest ---- */
/* Updates the page bounds of state si with the rows keys (a [rows][kv_heads*hd]
 * buffer) written at pos..: a page's first position resets them, later ones widen. */
void cg_bounds_update(Cg *g, int64_t si, LLVMValueRef pos, LLVMValueRef rows, LLVMValueRef keys);
void cg_lower_attention_quest(Cg *g, const Op *op);
/* One query head attends over the keys below n of the nl spans of B positions listed
 * in list (pages, key blocks): the sparse ops' shared inner loops. */
void cg_attend_listed(Cg *g, LLVMValueRef hq, LLVMValueRef orow, LLVMValueRef K, LLVMValueRef V, LLVMValueRef koff,
                      LLVMValueRef list, LLVMValueRef nl, LLVMValueRef n, int64_t B, int64_t kd, int64_t hd,
                      LLVMValueRef scores, LLVMValueRef acc, LLVMValueRef ci, LLVMValueRef *ov, bool prefetch);

/* ---- attention_block.c: block-sparse prefill attention, the sparse ops' visit counts ---- */
void cg_lower_attention_block(Cg *g, const Op *op);
/* The context's stat slot `slot_plus_one` - 1 (a sparse op's ia[6]), or null for 0. */
LLVMValueRef cg_stat_slot_ptr(Cg *g, int64_t slot_plus_one);
/* Adds n (i64) to the u64 at slot atomically (tasks count in parallel). */
void cg_count_visits(Cg *g, LLVMValueRef slot, LLVMValueRef n);

/* ---- glue.c: context API functions (create, init, load, reset, threads, stats) ---- */
void cg_emit_glue(CgResult *r, LLVMBuilderRef b, LLVMValueRef embedded_blob);

/* ---- emit.c: optimisation and output files ---- */
enum { CG_EMIT_OBJ = 1, CG_EMIT_ASM = 2, CG_EMIT_LL = 4, CG_EMIT_IR = 8, CG_EMIT_HEADER = 16,
       CG_EMIT_WEIGHTS = 32, CG_EMIT_MANIFEST = 64 };
bool cg_optimize(CgResult *r, int opt_level, char *err, size_t nerr);
/* The object section that holds embedded weights to be filled in (CgResult.embed_patch). */
#define CG_EMBED_SECTION ".rodata.elide_weights"
/* Writes the outputs of `emit` into dir as NAME.*, each through a temporary file and a
 * rename; on failure removes what it wrote and reports through d. */
bool cg_write_outputs(CgResult *r, const char *dir, unsigned emit, const char *ir_text, Diag *d);
/* Atomic file write: temp file in the same directory, then rename; a path that
 * names a character device or a FIFO (/dev/null, /dev/stdout) is written in place. */
bool cg_write_file(const char *path, const void *data, size_t n, char *err, size_t nerr);
/* Writes one output file that is not held in memory (the streamed blob, the object
 * written by LLVM): fd is the file, created empty, exclusively and read-write in the
 * private staging directory; path names it there (for LLVM, which opens by name). */
typedef bool (*CgOutWriter)(void *arg, int fd, const char *path, char *err, size_t nerr);
/* One output file of a set: its name inside the directory and its bytes, or the
 * writer that produces them (write set: data and size are ignored). */
typedef struct CgOutFile {
	const char *name;         /* "NAME.o" */
	const void *data;
	size_t size;
	CgOutWriter write;        /* NULL: data and size */
	void *arg;                /* of write */
} CgOutFile;
/* outset.c: writes files into dir as one set replacing the old one (see outset.c:
 * the old set or the new one survives any interruption; temporaries are created
 * exclusively in dir and never left behind). */
bool cg_write_set(const char *dir, const char *name, const CgOutFile *files, int nfiles, char *err, size_t nerr);
/* Removes the staging directory of the set being written, if any: for a fatal error
 * (LLVM's, which ends the process) inside a writer. */
void cg_write_set_abandon(void);

/* ---- cost.c: FLOPs and weight bytes per token of each entry, its paths and layers ---- */
void cg_compute_costs(CgResult *r);

/* ---- header.c / manifest.c ---- */
char *cg_header_text(const CgResult *r);   /* malloc'ed */
char *cg_manifest_text(const CgResult *r); /* malloc'ed */

/* ---- jit.c: ORC LLJIT of a compiled module (used by `elide run`) ---- */
typedef struct CgJit CgJit;
typedef void (*CgFn)(void); /* any function; cast to its real type before calling */
typedef struct CgJitSym {
	const char *name;        /* e.g. "elide_pool_parallel_for" */
	CgFn addr;
} CgJitSym;
/* Emits r's (optimised) module as a host object and links it in process; symbols
 * not in `syms` resolve against the process (libc, libm).  NULL with a message. */
CgJit *cg_jit_new(CgResult *r, const CgJitSym *syms, uint32_t nsyms, char *err, size_t nerr);
CgFn cg_jit_lookup(CgJit *j, const char *name); /* unprefixed symbol name; NULL if absent */
void cg_jit_free(CgJit *j);

/* ---- run_jit.c: the JIT backend of `elide run` (see tools/cmd_run.c RunBackend) ---- */
void *cg_run_open(Module *m, char *err, size_t nerr);
bool cg_run_call(void *run, const char *entry, const int32_t *tokens, int64_t ntokens, int32_t pos,
                 float *out, char *err, size_t nerr);
void cg_run_close(void *run);
/* Sets knob `knob` (Module.knobs index) through the generated NAME_set_knob. */
bool cg_run_set_knob(void *run, uint32_t knob, double v, char *err, size_t nerr);
/* Calls, tokens and layers run (out3), and every stat slot (slots[Module.nstats]). */
void cg_run_stats(void *run, int64_t *out3, int64_t *slots);
/* The runtime functions generated code calls, for binding into a JIT. */
uint32_t cg_runtime_syms(CgJitSym *syms, uint32_t cap);

#endif
