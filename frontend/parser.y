/* parser.y - the grammar of the elide language (pure bison parser, locations as Loc).
 * Actions are single constructor calls that build the AST in the parser's arena.
 * Syntax errors are rewritten clang-style as "expected X, saw Y"; recovery rules at
 * statement and item level let one run report many errors.  Policy statements are
 * kept as word lists here and interpreted with their schema in policy.c, which gives
 * better messages than grammar rules would.  docs/language.md is the reference. */
%define api.pure full
%define api.prefix {fey}
%define parse.error detailed
%define api.location.type {Loc}
%locations
%param {void *scanner} {AstParser *p}
%initial-action { @$ = (Loc){ .file = p->file, .line = 1, .col = 1, .end_col = 1 }; }

%code requires {
#include "frontend/frontend.h"
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
int feylex(FEYSTYPE *lval, Loc *lloc, void *scanner, AstParser *p);
}

%code {
#include <string.h>

static void feyerror(Loc *loc, void *scanner, AstParser *p, const char *msg);
#define A (p->arena)
#define STOP_IF_TOO_MANY() do { if (diag_too_many(p->diag)) YYABORT; } while (0)
}

%union {
	const char *str;
	double num;
	Ast *node;
}

%token MODEL "'model'" CONST "'const'" WEIGHTS "'weights'" STATE "'state'"
%token FN "'fn'" ENTRY "'entry'" FOR "'for'" IN "'in'" RETURN "'return'"
%token POLICY "'policy'"
%token <str> IDENT "identifier" STRING "string"
%token <num> INT "integer" FLOAT "number"
%token DOTDOT "'..'" ARROW "'->'" LE "'<='"

%type <node> file model mitems mitem consts constdef witems witem sitems sitem
%type <node> type dims dim params paramlist param block stmts stmt expr primary
%type <node> args arglist arg policy pstmts pstmt pwords pword number kvcall

%left '+' '-'
%left '*' '/'
%precedence NEG

%%

/* file: (model | policy)* */
file
	: %empty                { $$ = p->root = ast_new(A, AST_FILE, @$); }
	| file model            { $$ = ast_append($1, $2); }
	| file policy           { $$ = ast_append($1, $2); }
	| file error '}'        { $$ = $1; STOP_IF_TOO_MANY(); }
	;

/* model: 'model' IDENT '{' mitem* '}' */
model
	: MODEL IDENT '{' mitems '}'   { $$ = ast_with_kids(ast_mk(A, AST_MODEL, @2, $2, NULL, NULL, NULL), $4); }
	;

mitems
	: %empty                { $$ = ast_list(A, @$); }
	| mitems mitem          { $$ = ast_append($1, $2); }
	;

/* mitem: const | weights | state | fn | entry */
mitem
	: CONST consts ';'                                { $$ = $2; }
	| WEIGHTS IDENT '{' witems '}'                    { $$ = ast_with_kids(ast_mk(A, AST_WEIGHTS, @2, $2, NULL, NULL, NULL), $4); }
	| STATE IDENT '[' IDENT IN expr DOTDOT expr ']' ':' kvcall ';'
	  { $$ = ast_append(ast_new(A, AST_STATES, @1), ast_append(ast_mk(A, AST_FOR, @4, $4, $6, $8, NULL), ast_mk(A, AST_STATE, @2, $2, ast_mk(A, AST_IDENT, @4, $4, NULL, NULL, NULL), NULL, $11))); }
	| STATE '{' sitems '}'                            { $$ = ast_with_kids(ast_new(A, AST_STATES, @1), $3); }
	| FN IDENT '(' params ')' ARROW type block        { $$ = ast_with_kids(ast_mk(A, AST_FN, @2, $2, NULL, $7, $8), $4); }
	| ENTRY IDENT '(' params ')' ARROW type block     { $$ = ast_with_kids(ast_mk(A, AST_ENTRY, @2, $2, NULL, $7, $8), $4); }
	| error ';'                                       { $$ = NULL; STOP_IF_TOO_MANY(); }
	| error '}'                                       { $$ = NULL; STOP_IF_TOO_MANY(); }
	;

/* consts: IDENT '=' expr (',' IDENT '=' expr)* -- a list of AST_CONST */
consts
	: constdef              { $$ = ast_append(ast_list(A, @$), $1); }
	| consts ',' constdef   { $$ = ast_append($1, $3); }
	;
constdef
	: IDENT '=' expr        { $$ = ast_mk(A, AST_CONST, @1, $1, $3, NULL, NULL); }
	;

/* witem: IDENT ['[' expr ']'] ':' type '=' STRING ';' | 'for' IDENT 'in' expr '..' expr '{' witem* '}' */
witems
	: %empty                { $$ = ast_list(A, @$); }
	| witems witem          { $$ = ast_append($1, $2); }
	;
witem
	: IDENT ':' type '=' STRING ';'                   { $$ = ast_mk(A, AST_WEIGHT, @1, $1, NULL, $3, ast_mk(A, AST_IDENT, @5, $5, NULL, NULL, NULL)); }
	| IDENT '[' expr ']' ':' type '=' STRING ';'      { $$ = ast_mk(A, AST_WEIGHT, @1, $1, $3, $6, ast_mk(A, AST_IDENT, @8, $8, NULL, NULL, NULL)); }
	| FOR IDENT IN expr DOTDOT expr '{' witems '}'    { $$ = ast_with_kids(ast_mk(A, AST_FOR, @2, $2, $4, $6, NULL), $8); }
	| error ';'                                       { $$ = NULL; STOP_IF_TOO_MANY(); }
	;

/* sitem: IDENT ['[' expr ']'] ':' IDENT '(' args ')' ';' | 'for' ... '{' sitem* '}' */
sitems
	: %empty                { $$ = ast_list(A, @$); }
	| sitems sitem          { $$ = ast_append($1, $2); }
	;
sitem
	: IDENT ':' kvcall ';'                            { $$ = ast_mk(A, AST_STATE, @1, $1, NULL, NULL, $3); }
	| IDENT '[' expr ']' ':' kvcall ';'               { $$ = ast_mk(A, AST_STATE, @1, $1, $3, NULL, $6); }
	| FOR IDENT IN expr DOTDOT expr '{' sitems '}'    { $$ = ast_with_kids(ast_mk(A, AST_FOR, @2, $2, $4, $6, NULL), $8); }
	| error ';'                                       { $$ = NULL; STOP_IF_TOO_MANY(); }
	;
kvcall
	: IDENT '(' args ')'    { $$ = ast_with_kids(ast_mk(A, AST_CALL, @1, $1, NULL, NULL, NULL), $3); }
	;

/* type: IDENT ['[' dim (',' dim)* ']'] ; dim: ['<='] expr | '..' (fn types: any leading axes) */
type
	: IDENT                 { $$ = ast_mk(A, AST_TYPE, @$, $1, NULL, NULL, NULL); }
	| IDENT '[' dims ']'    { $$ = ast_with_kids(ast_mk(A, AST_TYPE, @$, $1, NULL, NULL, NULL), $3); }
	;
dims
	: dim                   { $$ = ast_append(ast_list(A, @$), $1); }
	| dims ',' dim          { $$ = ast_append($1, $3); }
	;
dim
	: expr                  { $$ = ast_mk(A, AST_DIM, @$, NULL, $1, NULL, NULL); }
	| LE expr               { $$ = ast_mk(A, AST_DIM, @$, "<=", $2, NULL, NULL); }
	| DOTDOT                { $$ = ast_mk(A, AST_DIM, @$, "..", NULL, NULL, NULL); }
	;

/* params: [IDENT ':' type (',' IDENT ':' type)*] */
params
	: %empty                { $$ = ast_list(A, @$); }
	| paramlist             { $$ = $1; }
	;
paramlist
	: param                 { $$ = ast_append(ast_list(A, @$), $1); }
	| paramlist ',' param   { $$ = ast_append($1, $3); }
	;
param
	: IDENT ':' type        { $$ = ast_mk(A, AST_PARAM, @1, $1, NULL, $3, NULL); }
	;

/* block: '{' stmt* '}' */
block
	: '{' stmts '}'         { $$ = $2; }
	;
stmts
	: %empty                { $$ = ast_list(A, @$); }
	| stmts stmt            { $$ = ast_append($1, $2); }
	;
/* stmt: IDENT '=' expr ';' | 'for' IDENT 'in' expr '..' expr block | 'return' expr ';' */
stmt
	: IDENT '=' expr ';'                        { $$ = ast_mk(A, AST_ASSIGN, @1, $1, $3, NULL, NULL); }
	| FOR IDENT IN expr DOTDOT expr block       { $$ = ast_mk(A, AST_FOR, @2, $2, $4, $6, $7); }
	| RETURN expr ';'                           { $$ = ast_mk(A, AST_RETURN, @1, NULL, $2, NULL, NULL); }
	| error ';'                                 { $$ = NULL; STOP_IF_TOO_MANY(); }
	;

/* expr: expr ('+'|'-'|'*'|'/') expr | '-' expr | primary */
expr
	: expr '+' expr         { $$ = ast_mk(A, AST_BINARY, @2, "+", $1, $3, NULL); }
	| expr '-' expr         { $$ = ast_mk(A, AST_BINARY, @2, "-", $1, $3, NULL); }
	| expr '*' expr         { $$ = ast_mk(A, AST_BINARY, @2, "*", $1, $3, NULL); }
	| expr '/' expr         { $$ = ast_mk(A, AST_BINARY, @2, "/", $1, $3, NULL); }
	| '-' expr %prec NEG    { $$ = ast_mk(A, AST_NEG, @1, NULL, $2, NULL, NULL); }
	| primary               { $$ = $1; }
	;
/* primary: number | IDENT | IDENT '[' expr ']' | IDENT '(' args ')' | '(' expr ')' */
primary
	: number                { $$ = $1; }
	| IDENT                 { $$ = ast_mk(A, AST_IDENT, @1, $1, NULL, NULL, NULL); }
	| IDENT '[' expr ']'    { $$ = ast_mk(A, AST_INDEX, @$, $1, $3, NULL, NULL); }
	| IDENT '(' args ')'    { $$ = ast_with_kids(ast_mk(A, AST_CALL, @1, $1, NULL, NULL, NULL), $3); }
	| '(' expr ')'          { $$ = $2; }
	;
number
	: INT                   { $$ = ast_mknum(A, @1, $1, true); }
	| FLOAT                 { $$ = ast_mknum(A, @1, $1, false); }
	;
/* args: [arg (',' arg)*] ; arg: expr | IDENT '=' expr */
args
	: %empty                { $$ = ast_list(A, @$); }
	| arglist               { $$ = $1; }
	;
arglist
	: arg                   { $$ = ast_append(ast_list(A, @$), $1); }
	| arglist ',' arg       { $$ = ast_append($1, $3); }
	;
arg
	: expr                  { $$ = $1; }
	| IDENT '=' expr        { $$ = ast_mk(A, AST_NAMED, @1, $1, $3, NULL, NULL); }
	;

/* policy: 'policy' IDENT 'for' IDENT '{' (IDENT pword* ';')* '}' */
policy
	: POLICY IDENT FOR IDENT '{' pstmts '}'
	  { $$ = ast_with_kids(ast_mk(A, AST_POLICY, @2, $2, ast_mk(A, AST_IDENT, @4, $4, NULL, NULL, NULL), NULL, NULL), $6); }
	;
pstmts
	: %empty                { $$ = ast_list(A, @$); }
	| pstmts pstmt          { $$ = ast_append($1, $2); }
	;
pstmt
	: IDENT pwords ';'      { $$ = ast_with_kids(ast_mk(A, AST_PSTMT, @1, $1, NULL, NULL, NULL), $2); }
	| error ';'             { $$ = NULL; STOP_IF_TOO_MANY(); }
	;
pwords
	: %empty                { $$ = ast_list(A, @$); }
	| pwords pword          { $$ = ast_append($1, $2); }
	;
/* pword: IDENT | 'in' | 'weights' | number | STRING | ',' | '>' | '/' | '..' | '-' | IDENT '(' pword* ')' */
pword
	: IDENT                 { $$ = ast_word(A, @1, 'i', $1, 0, false); }
	| IN                    { $$ = ast_word(A, @1, 'i', "in", 0, false); }
	| WEIGHTS               { $$ = ast_word(A, @1, 'i', "weights", 0, false); }
	| INT                   { $$ = ast_word(A, @1, 'n', NULL, $1, true); }
	| FLOAT                 { $$ = ast_word(A, @1, 'n', NULL, $1, false); }
	| STRING                { $$ = ast_word(A, @1, 's', $1, 0, false); }
	| ','                   { $$ = ast_word(A, @1, ',', ",", 0, false); }
	| '>'                   { $$ = ast_word(A, @1, '>', ">", 0, false); }
	| '/'                   { $$ = ast_word(A, @1, '/', "/", 0, false); }
	| DOTDOT                { $$ = ast_word(A, @1, '.', "..", 0, false); }
	| '-'                   { $$ = ast_word(A, @1, '-', "-", 0, false); }
	| IDENT '(' pwords ')'  { $$ = ast_with_kids(ast_word(A, @1, 'c', $1, 0, false), $3); }
	;

%%

/* The last non-blank character before loc on its line (NUL if none): what the
 * parser just read when bison lists no expected tokens. */
static char
prev_char(const AstParser *p, Loc loc)
{
	if (!p->src || loc.line <= 0)
		return '\0';
	const char *t = p->src->text, *end = t + p->src->len;
	for (int l = 1; l < loc.line && t < end; l++) {
		const char *nl = memchr(t, '\n', (size_t)(end - t));
		if (!nl)
			return '\0';
		t = nl + 1;
	}
	for (int c = loc.col - 2; c >= 0; c--)
		if (t + c < end && t[c] != ' ' && t[c] != '\t')
			return t[c];
	return '\0';
}

/* Rewrites bison's "syntax error, unexpected X, expecting Y or Z" as
 * "expected Y or Z, saw X" (with the identifier's or number's text). */
static void
feyerror(Loc *loc, void *scanner, AstParser *p, const char *msg)
{
	(void)scanner;
	const char *un = strstr(msg, "unexpected ");
	if (!un) {
		diag_error(p->diag, *loc, "%s", strncmp(msg, "memory exhausted", 16) == 0 ?
		           "nesting too deep" : msg);
		return;
	}
	un += strlen("unexpected ");
	const char *ex = strstr(un, ", expecting ");
	int nun = ex ? (int)(ex - un) : (int)strlen(un);
	char saw[160];
	bool texty = (nun == 10 && strncmp(un, "identifier", 10) == 0) ||
	             (nun == 7 && strncmp(un, "integer", 7) == 0) ||
	             (nun == 6 && strncmp(un, "number", 6) == 0);
	if (texty && p->last_text)
		snprintf(saw, sizeof saw, "%.*s '%.60s'", nun, un, p->last_text);
	else
		snprintf(saw, sizeof saw, "%.*s", nun, un);
	if (ex)
		diag_error(p->diag, *loc, "expected %s, saw %s", ex + strlen(", expecting "), saw);
	else if (nun == 11 && strncmp(un, "end of file", 11) == 0)
		diag_error(p->diag, *loc, "expected '}', saw end of file");
	else if (prev_char(p, *loc) && strchr("=(,[+-*/", prev_char(p, *loc)))
		diag_error(p->diag, *loc, "expected an expression, saw %s", saw);
	else
		diag_error(p->diag, *loc, "unexpected %s", saw);
}
