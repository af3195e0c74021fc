/* eir_parser.y - the grammar of the textual IR (pure bison parser, locations as Loc).
 * Actions are single calls into eir_build.c, which builds the Module as it goes.
 * Op lines are read generically (name, operand list, attribute list, type) and
 * checked against the op table there, which gives better messages than one grammar
 * rule per op.  Syntax errors read "expected X, saw Y"; after an error the parser
 * resynchronises at the next '}' so one run can report several.  docs/ir.md is the
 * reference for the syntax. */
%define api.pure full
%define api.prefix {eir_}
%define parse.error detailed
%define api.location.type {Loc}
%locations
%param {void *scanner} {EirParser *p}
%initial-action { @$ = (Loc){ .file = p->file, .line = 1, .col = 1, .end_col = 1 }; }

%code requires {
#include "ir/ir.h"
#define YYMAXDEPTH 2000
/* Loc holds one line: a span that crosses lines keeps its start only. */
#define YYLLOC_DEFAULT(Cur, Rhs, N)                                                     \
	do {                                                                              \
		if (N) {                                                                  \
			(Cur) = YYRHSLOC(Rhs, 1);                                         \
			if (YYRHSLOC(Rhs, N).line == (Cur).line)                          \
				(Cur).end_col = YYRHSLOC(Rhs, N).end_col;                 \
		} else {                                                                  \
			(Cur) = YYRHSLOC(Rhs, 0);                                         \
			(Cur).col = (Cur).end_col;                                        \
		}                                                                         \
	} while (0)
}

%code provides {
int eir_lex(EIR_STYPE *lval, Loc *lloc, void *scanner, EirParser *p);
}

%code {
static void eir_error(Loc *loc, void *scanner, EirParser *p, const char *msg);
#define STOP_IF_TOO_MANY() do { if (diag_too_many(p->diag)) YYABORT; } while (0)
}

%union {
	const char *str;
	Type type;
	EirList *list;
	EirOpts *opts;
	PolicyVal pv;
	bool flag;
}

%token MODULE "'module'" LAYERS "'layers'" CONST "'const'" WEIGHTS "'weights'"
%token NOTES "'notes'" PARAM "'param'" STATE "'state'" LAYER "'layer'" HASH "'hash'"
%token POLICY "'policy'" ENTRY "'entry'" RET "'ret'"
%token KNOB "'knob'" STAT "'stat'" IF "'if'" ELSE "'else'" END "'end'"
%token <str> IDENT "identifier" VALNAME "value name" SYM "symbol" STRING "string"
%token <str> INT "integer" FLOAT "number" HEX "hex number"
%token DOTDOT "'..'" ARROW "'->'" LE "'<='"

%type <str> word optlayer optsource opthash optsym number
%type <type> type dims
%type <list> operands oplist attrs attrlist retops
%type <opts> popts poptlist
%type <pv> pval intlist strlist

%%

/* file: module (policy | entry)* */
file
	: module items
	;

items
	: %empty
	| items policy
	| items entry
	| items error '}'          { STOP_IF_TOO_MANY(); }
	;

/* module: 'module' SYM '{' mitem* '}' */
module
	: MODULE SYM               { eir_module(p, $2, @2); }
	  '{' mitems '}'
	;

mitems
	: %empty
	| mitems mitem
	;

/* mitem: layers = N; | const @x = N; | weights = "p"; | notes = "t";
 *      | param @x : type [layer N] [= "source"] [hash 0x..] [format F [group N]];
 *      | state @x : kvcache(ctx = N, kv_heads = N, head_dim = N) [layer N];
 *      | knob @x : DTYPE = NUM {min = NUM, max = NUM}; | stat @x; */
mitem
	: LAYERS '=' INT ';'                               { eir_module_layers(p, $3, @3); }
	| CONST SYM '=' INT ';'                            { eir_module_const(p, $2, $4, @2); }
	| WEIGHTS '=' STRING ';'                           { eir_module_string(p, "weights", $3, @3); }
	| NOTES '=' STRING ';'                             { eir_module_string(p, "notes", $3, @3); }
	| PARAM SYM ':' type optlayer optsource opthash { eir_param(p, $2, $4, $5, $6, $7, @2); } optformat ';'
	| STATE SYM ':' IDENT '(' attrlist ')' optlayer ';' { eir_state(p, $2, $4, $6, $8, @2); }
	| KNOB SYM ':' IDENT '=' number attrs ';'          { eir_knob(p, $2, $4, $6, $7, @2); }
	| STAT SYM ';'                                     { eir_stat(p, $2, @2); }
	| error ';'                                        { STOP_IF_TOO_MANY(); }
	;

number
	: INT                      { $$ = $1; }
	| FLOAT                    { $$ = $1; }
	;
optlayer
	: %empty                   { $$ = NULL; }
	| LAYER INT                { $$ = $2; }
	;
optsource
	: %empty                   { $$ = NULL; }
	| '=' STRING               { $$ = $2; }
	;
opthash
	: %empty                   { $$ = NULL; }
	| HASH HEX                 { $$ = $2; }
	;
/* optformat: ['format' IDENT ['group' INT] ['activations' IDENT]]: the storage
 * format of the param just read (and the activations of a q8/q4 one) */
optformat
	: %empty
	| IDENT IDENT              { eir_param_format(p, $1, $2, NULL, NULL, NULL, NULL, @1); }
	| IDENT IDENT IDENT INT    { eir_param_format(p, $1, $2, $3, $4, NULL, NULL, @1); }
	| IDENT IDENT IDENT IDENT  { eir_param_format(p, $1, $2, NULL, NULL, $3, $4, @1); }
	| IDENT IDENT IDENT INT IDENT IDENT { eir_param_format(p, $1, $2, $3, $4, $5, $6, @1); }
	;

/* type: IDENT ['[' ['<='] INT (',' INT)* ']'] */
type
	: IDENT                    { $$ = eir_type(p, $1, @1); }
	| dims ']'                 { $$ = $1; }
	;
dims
	: IDENT '[' INT            { $$ = eir_type_dim(p, eir_type(p, $1, @1), $3, false, @3); }
	| IDENT '[' LE INT         { $$ = eir_type_dim(p, eir_type(p, $1, @1), $4, true, @4); }
	| dims ',' INT             { $$ = eir_type_dim(p, $1, $3, false, @3); }
	;

/* policy: 'policy' [SYM] '{' (word [word] '(' popts ')' ';')* '}' */
policy
	: POLICY optsym            { eir_policy(p, $2, @1); }
	  '{' pstmts '}'
	;
optsym
	: %empty                   { $$ = NULL; }
	| SYM                      { $$ = $1; }
	;
pstmts
	: %empty
	| pstmts pstmt
	;
pstmt
	: word '(' popts ')' ';'        { eir_policy_stmt(p, $1, NULL, $3, @1); }
	| word word '(' popts ')' ';'   { eir_policy_stmt(p, $1, $2, $4, @1); }
	| error ';'                     { STOP_IF_TOO_MANY(); }
	;
popts
	: %empty                   { $$ = eir_opts(p); }
	| poptlist                 { $$ = $1; }
	;
poptlist
	: word '=' pval                 { $$ = eir_opts_add(p, eir_opts(p), $1, $3, @1); }
	| poptlist ',' word '=' pval    { $$ = eir_opts_add(p, $1, $3, $5, @3); }
	;
/* pval: number | INT/INT | INT..INT | '[' ints ']' | '[' strings ']' | STRING | word */
pval
	: INT                      { $$ = eir_pv_num(p, $1, @1); }
	| FLOAT                    { $$ = eir_pv_num(p, $1, @1); }
	| INT '/' INT              { $$ = eir_pv_frac(p, $1, $3, @1); }
	| INT DOTDOT INT           { $$ = eir_pv_range(p, $1, $3, @1); }
	| '[' ']'                  { $$ = eir_pv_word(p, PV_LIST, NULL); }
	| intlist ']'              { $$ = $1; }
	| strlist ']'              { $$ = $1; }
	| STRING                   { $$ = eir_pv_word(p, PV_STRING, $1); }
	| word                     { $$ = eir_pv_word(p, PV_IDENT, $1); }
	;
intlist
	: '[' INT                  { $$ = eir_pv_list(p, eir_pv_word(p, PV_LIST, NULL), $2, @2); }
	| intlist ',' INT          { $$ = eir_pv_list(p, $1, $3, @3); }
	;
strlist
	: '[' STRING               { $$ = eir_pv_names(p, eir_pv_word(p, PV_NAMES, NULL), $2, @2); }
	| strlist ',' STRING       { $$ = eir_pv_names(p, $1, $3, @3); }
	;

/* A bare word of a policy or an attribute key: identifiers and keywords alike. */
word
	: IDENT                    { $$ = $1; }
	| LAYERS                   { $$ = "layers"; }
	| LAYER                    { $$ = "layer"; }
	| STATE                    { $$ = "state"; }
	| CONST                    { $$ = "const"; }
	| PARAM                    { $$ = "param"; }
	| WEIGHTS                  { $$ = "weights"; }
	| HASH                     { $$ = "hash"; }
	| NOTES                    { $$ = "notes"; }
	| MODULE                   { $$ = "module"; }
	| POLICY                   { $$ = "policy"; }
	| ENTRY                    { $$ = "entry"; }
	| RET                      { $$ = "ret"; }
	| KNOB                     { $$ = "knob"; }
	| STAT                     { $$ = "stat"; }
	| IF                       { $$ = "if"; }
	| ELSE                     { $$ = "else"; }
	| END                      { $$ = "end"; }
	;

/* entry: 'entry' IDENT SYM '(' [SYM ':' type (',' ...)*] ')' '->' rets '{' stmt* '}' */
entry
	: ENTRY IDENT SYM          { eir_func(p, $2, $3, @3); }
	  '(' fargs ')' ARROW rets '{' stmts '}'
	                           { eir_func_end(p); }
	;
fargs
	: %empty
	| farglist
	;
farglist
	: SYM ':' type             { eir_func_arg(p, $1, $3, @1); }
	| farglist ',' SYM ':' type { eir_func_arg(p, $3, $5, @3); }
	;
rets
	: type                     { eir_func_ret(p, $1); }
	| '(' ')'
	| '(' retlist ')'
	;
retlist
	: type                     { eir_func_ret(p, $1); }
	| retlist ',' type         { eir_func_ret(p, $3); }
	;

stmts
	: %empty
	| stmts stmt
	;
/* stmt: op | 'layer' INT '{' op* '}' */
stmt
	: op
	| LAYER INT                { eir_layer(p, $2, @2); }
	  '{' ops '}'              { eir_layer(p, NULL, @5); }
	| error '}'                { STOP_IF_TOO_MANY(); }
	;
ops
	: %empty
	| ops op
	;
/* op: VALNAME '=' word operands attrs ':' type | 'ret' operands attrs
 *   | 'if' VALNAME attrs | 'else' | 'end' | 'stat' SYM attrs | IDENT oplist attrs (ops without a value) */
op
	: VALNAME '=' word operands attrs ':' type { eir_op(p, $1, @1, $3, @3, $4, $5, $7, true); }
	| RET retops attrs                         { eir_op(p, NULL, @1, "ret", @1, $2, $3, (Type){ 0 }, false); }
	| IF VALNAME attrs                         { eir_op(p, NULL, @1, "if", @1,
	                                               eir_list_add(p, eir_list(p), NULL, EO_VALUE, $2, @2), $3,
	                                               (Type){ 0 }, false); }
	| ELSE                                     { eir_op(p, NULL, @1, "else", @1, eir_list(p), eir_list(p),
	                                               (Type){ 0 }, false); }
	| END                                      { eir_op(p, NULL, @1, "end", @1, eir_list(p), eir_list(p),
	                                               (Type){ 0 }, false); }
	| STAT SYM attrs                           { eir_op(p, NULL, @1, "stat", @1,
	                                               eir_list_add(p, eir_list(p), NULL, EO_SYM, $2, @2), $3,
	                                               (Type){ 0 }, false); }
	| IDENT oplist attrs                       { eir_op(p, NULL, @1, $1, @1, $2, $3, (Type){ 0 }, false); }
	;
/* A ret without operands is written `ret ()`, so the next line cannot be misread. */
retops
	: '(' ')'                  { $$ = eir_list(p); }
	| oplist                   { $$ = $1; }
	;
operands
	: %empty                   { $$ = eir_list(p); }
	| oplist                   { $$ = $1; }
	;
oplist
	: VALNAME                  { $$ = eir_list_add(p, eir_list(p), NULL, EO_VALUE, $1, @1); }
	| INT                      { $$ = eir_list_add(p, eir_list(p), NULL, EO_INT, $1, @1); }
	| FLOAT                    { $$ = eir_list_add(p, eir_list(p), NULL, EO_FLOAT, $1, @1); }
	| SYM                      { $$ = eir_list_add(p, eir_list(p), NULL, EO_SYM, $1, @1); }
	| oplist ',' VALNAME       { $$ = eir_list_add(p, $1, NULL, EO_VALUE, $3, @3); }
	;
attrs
	: %empty                   { $$ = eir_list(p); }
	| '{' attrlist '}'         { $$ = $2; }
	;
attrlist
	: word '=' INT             { $$ = eir_list_add(p, eir_list(p), $1, EO_INT, $3, @1); }
	| word '=' FLOAT           { $$ = eir_list_add(p, eir_list(p), $1, EO_FLOAT, $3, @1); }
	| word '=' SYM             { $$ = eir_list_add(p, eir_list(p), $1, EO_SYM, $3, @1); }
	| attrlist ',' word '=' INT   { $$ = eir_list_add(p, $1, $3, EO_INT, $5, @3); }
	| attrlist ',' word '=' FLOAT { $$ = eir_list_add(p, $1, $3, EO_FLOAT, $5, @3); }
	| attrlist ',' word '=' SYM   { $$ = eir_list_add(p, $1, $3, EO_SYM, $5, @3); }
	;

%%

static void
eir_error(Loc *loc, void *scanner, EirParser *p, const char *msg)
{
	(void)scanner;
	eir_syntax_error(p, *loc, msg);
}
