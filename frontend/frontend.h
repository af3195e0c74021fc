/* frontend.h - the elide language: AST, parser, checks, lowering to the IR.
 * One header for the frontend/ folder, divided into per-file sections.
 * The flow is fe_load (or ast_parse + fe_lower): text -> tokens (lexer.l) -> AST
 * (parser.y, nodes in an arena, every node with a Loc) -> checked and lowered IR
 * (lower.c for the model, policy.c for policy statements).  Errors go through a Diag;
 * every function keeps going after an error and reports up to DIAG_MAX_ERRORS.
 * The language is documented in docs/language.md. */
#ifndef ELIDE_FRONTEND_H
#define ELIDE_FRONTEND_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ir/ir.h"
#include "support/support.h"

/* ---- ast.c: syntax tree nodes ---- */

typedef enum AstKind {
	/* expressions */
	AST_NUM,     /* num (is_int when written without '.' or exponent) */
	AST_IDENT,   /* name */
	AST_INDEX,   /* name[a]: a weight or state of one layer */
	AST_CALL,    /* name(kids): op, fn call or kvcache(...) */
	AST_NAMED,   /* name = a: a named argument of a call */
	AST_BINARY,  /* a op b, op one of + - * / */
	AST_NEG,     /* -a */
	/* types */
	AST_TYPE,    /* name (dtype) with dims in kids (AST_DIM) */
	AST_DIM,     /* a: extent; name "<=" when written "<= a" (a bound); name ".." and no a: any leading axes */
	/* statements */
	AST_ASSIGN,  /* name = a */
	AST_FOR,     /* for name in a..b { kids } */
	AST_RETURN,  /* return a */
	/* model items */
	AST_CONST,   /* const name = a (one per name) */
	AST_WEIGHTS, /* weights name { kids: AST_WEIGHT and AST_FOR } */
	AST_WEIGHT,  /* name[a]: b(type) = str; a NULL when not indexed */
	AST_STATES,  /* state block: kids are AST_STATE and AST_FOR */
	AST_STATE,   /* name[a]: c(call kvcache(...)); a NULL when not indexed */
	AST_PARAM,   /* name: b(type), a parameter of fn/entry */
	AST_FN,      /* fn name(kids=params) -> b(type) { c(AST_LIST of statements) } */
	AST_ENTRY,   /* entry name(...) as AST_FN */
	AST_MODEL,   /* model name { kids: items } */
	/* policies */
	AST_POLICY,  /* policy name for str(model name) { kids: AST_PSTMT } */
	AST_PSTMT,   /* name(verb) kids: AST_PWORD */
	AST_PWORD,   /* one word: op = 'i' ident (name), 'n' number (num), 's' string (str),
	                or a punctuation char (',', '>', '/', '.' for "..", '-');
	                'c' call: name(kids) */
	/* containers */
	AST_LIST,    /* kids: the items */
	AST_FILE,    /* kids: models and policies */
} AstKind;

typedef struct Ast Ast;
struct Ast {
	AstKind kind;
	Loc loc;
	const char *name;  /* identifier, declared name, op or verb */
	const char *str;   /* string literal contents (escapes resolved) */
	double num;        /* AST_NUM, numeric AST_PWORD */
	bool is_int;       /* number written as an integer */
	int op;            /* operator char (AST_BINARY) or word kind (AST_PWORD) */
	Ast *a, *b, *c;    /* children, meaning per kind (above) */
	Ast *kids, *last;  /* list of children (kids), linked through next */
	uint32_t nkids;
	Ast *next;         /* next sibling in the parent's list */
};

Ast *ast_new(Arena *ar, AstKind kind, Loc loc);
Ast *ast_mk(Arena *ar, AstKind kind, Loc loc, const char *name, Ast *a, Ast *b, Ast *c);
Ast *ast_mknum(Arena *ar, Loc loc, double v, bool is_int);
/* A policy word: op 'i' ident, 'n' number, 's' string (text), 'c' call, or punctuation. */
Ast *ast_word(Arena *ar, Loc loc, int op, const char *text, double num, bool is_int);
Ast *ast_list(Arena *ar, Loc loc);               /* an empty AST_LIST */
Ast *ast_append(Ast *list, Ast *item);           /* adds item (if non-NULL) to list->kids */
Ast *ast_with_kids(Ast *node, Ast *list);        /* moves list's kids into node */
void ast_dump(FILE *out, const Ast *n);          /* indented tree with locations */
const char *ast_kind_name(AstKind k);

/* ---- parser.y + lexer.l: text -> AST ---- */

/* State shared by the lexer and the parser. */
typedef struct AstParser {
	Arena *arena;            /* where nodes live */
	Diag *diag;
	const char *file;        /* path used in locations */
	Ast *root;               /* AST_FILE, set when parsing ends (even after errors) */
	int line, col;           /* lexer position: next character */
	const char *last_text;   /* text of the last token (for "saw ..." messages) */
	const SourceFile *src;   /* the text being parsed */
} AstParser;

/* Parses a whole file.  Always returns an AST_FILE (possibly partial); check
 * d->nerrors to know whether the text was well formed. */
Ast *ast_parse(Arena *ar, const SourceFile *src, Diag *d);

/* ---- lower.c: checks and lowering of a model to the IR ---- */

/* Checks every model and policy of the file and lowers the model with the policy
 * named `policy` attached (NULL or "dense": none).  Returns NULL after reporting
 * errors. */
Module *fe_lower(const Ast *file, const char *policy, Diag *d);

/* Reads, parses, checks and lowers `path`.  The source is registered with d so carets
 * print; it stays allocated for the life of the process.  NULL after errors (a file
 * that cannot be read is reported too). */
Module *fe_load(const char *path, const char *policy, Diag *d);

/* Same from text in memory (path is only used in messages). */
Module *fe_load_text(const char *path, const char *text, size_t len, const char *policy, Diag *d);

/* ---- decl.c / lower.c / lower_ops.c internals (used by these files only) ---- */

typedef struct Num {
	double v;
	bool is_int;
} Num;

typedef enum SymKind { SYM_CONST, SYM_WEIGHT, SYM_STATE, SYM_FN, SYM_ENTRY } SymKind;

typedef struct MSym {      /* a model-level name */
	const char *name;
	SymKind kind;
	Loc loc;
	const Ast *decl;
	Num val;               /* SYM_CONST */
	bool valid;            /* SYM_CONST: evaluated without error */
	bool indexed;          /* weight or state declared as name[i] */
	bool bad;              /* its declaration had errors (reported): uses stay quiet */
	bool used;             /* SYM_FN: inlined at least once */
	int32_t param;         /* plain weight: param index; plain state: state index */
	int32_t *slots;        /* indexed: param/state index per index, -1 if none */
	int64_t nslots;
} MSym;

typedef struct LSym {      /* a name of the current fn/entry frame */
	const char *name;
	Loc loc;
	bool is_int;           /* loop variable or 'int' parameter: iv */
	int64_t iv;
	ValueId v;             /* tensor value (IR_NO_VALUE after an error) */
} LSym;

typedef struct Lower {
	Diag *d;
	Module *m;
	const Ast *model;
	Arena scratch;                  /* messages and temporaries */
	MSym *syms; uint32_t nsyms, capsyms;
	StrMap symidx;                  /* name -> index into syms */
	int64_t nlayers_decl;           /* the 'layers' constant, -1 if none */
	bool in_loop;                   /* declaring inside a 'for' loop */
	Func *f;                        /* entry being lowered */
	LSym *locals; uint32_t nlocals, caplocals;
	uint32_t frame;                 /* first local of the current frame */
	int32_t layer;                  /* layer stamped on new ops, -1 outside */
	int32_t last_layer;             /* last layer region of the entry */
	int loop_depth;
	int depth;                      /* expression recursion */
	const Ast *calls[32]; int ncalls; /* fn inlining stack */
	bool returned; ValueId ret; Loc ret_loc;
	bool stop;                      /* too many errors or ops: unwind */
	int64_t nops_left;
	int64_t work_left;              /* loop iterations and inlined calls left (all entries) */
	bool keep_fns;                  /* keep fns lowered alone as FN_HELPER (exit heads) */
} Lower;

/* decl.c */
void lw_declare(Lower *L, const Ast *model);        /* step 1: every model-level name */
MSym *lw_find(Lower *L, const char *name);
const char *lw_sym_what(SymKind k);                 /* "constant", "weight", ... */
LSym *lw_local(Lower *L, const char *name);
LSym *lw_push_local(Lower *L, const char *name, Loc loc);
/* A written type; is_int: 'int' allowed (fn parameters); wild: a first dimension
 * '..' allowed (fn types), then out holds the trailing axes only. */
bool lw_eval_type(Lower *L, const Ast *t, Type *out, bool *is_int, bool allow_int, bool *wild);
bool lw_eval_num(Lower *L, const Ast *e, Num *out);
bool lw_eval_int(Lower *L, const Ast *e, const char *what, int64_t *out);
bool lw_is_const(Lower *L, const Ast *e);
const char *lw_tstr(Lower *L, Type t);
bool lw_work(Lower *L, Loc loc); /* counts one unit of unrolling work; false when over budget */
bool lw_check_type(Lower *L, ValueId v, Type want, Loc loc, const char *what);
/* lower.c */
ValueId lw_inline(Lower *L, const Ast *call, const MSym *fn);
/* lower_ops.c */
ValueId lw_expr(Lower *L, const Ast *e);  /* a tensor expression */
ValueId lw_emit(Lower *L, Opcode code, const ValueId *args, uint32_t nargs, const int64_t *ia,
                const float *fa, Loc loc);

/* ---- policy.c: policy statements -> typed ir Policy, with range checks ---- */

/* Whether an 'exit' statement of p names fn as its head. */
bool fe_policy_names_head(const Policy *p, const char *fn);

/* What policy checks need to know about the model. */
typedef struct FeModelInfo {
	const char *name;
	int64_t nlayers;          /* layers of the model (the 'layers' constant or regions) */
	const Ast *model;         /* for fn lookup (exit heads) */
} FeModelInfo;

/* Builds the ir Policy of `pol` in arena ar, reporting every problem.  Returns NULL
 * after errors. */
Policy *fe_policy_build(Arena *ar, const Ast *pol, const FeModelInfo *mi, Diag *d);

#endif
