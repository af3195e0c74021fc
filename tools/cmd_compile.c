/* cmd_compile.c - `elide compile`: a model (and policy) plus its weights in; a native
 * object, a C header, a packed weight blob and a JSON manifest out.
 *   elide compile M.elide|M.eir -w W.safetensors -o DIR [--policy P]
 *         [--emit=obj,asm,llvm-ir,ir,header] [--embed-weights] [-O0..-O3]
 *         [--target=TRIPLE] [--cpu=NAME] [--features=+a,-b] [--no-fuse]
 * The default pipeline runs (passes/pipeline.c: the policy's passes, then the
 * clean-ups, as in `elide run`), then the verifier; --emit=ir writes the IR codegen saw.
 * NAME.weights (unless --embed-weights) and NAME.json are always written.  Outputs go
 * through temporary files and renames; a failed compile leaves none of them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "tools/driver.h"

static void
usage(FILE *out)
{
	fprintf(out,
	        "USAGE: elide compile MODEL.elide -w WEIGHTS.safetensors -o DIR [options]\n\n"
	        "OPTIONS:\n"
	        "  -w, --weights FILE   the model's weights: safetensors, GGUF, a shard index or a\n"
	        "                       model directory; repeat -w for several files\n"
	        "  -o DIR               output directory (created if missing)\n"
	        "  --policy NAME        adaptive-compute policy of the model file\n"
	        "  --quantize=F         store the weight matrices as F: q8, q4, bf16 (or f32)\n"
	        "  --quantize-group=G   elements per scale of q8 and q4 (default 32)\n"
	        "  --int8-activations   q8/q4 linears quantise their inputs to int8 per row and\n"
	        "                       group and use integer dot products (VNNI, sdot)\n"
	        "  --emit=LIST          any of obj,asm,llvm-ir,ir,header (default obj,header);\n"
	        "                       NAME.weights and NAME.json are always written\n"
	        "  --embed-weights      put the weight blob in the object (no NAME.weights)\n"
	        "  -O0 .. -O3           optimisation level (default -O3)\n"
	        "  --target=TRIPLE      target triple (default: the host), e.g. aarch64-linux-gnu\n"
	        "  --cpu=NAME           target CPU (default: the host's, generic when cross-compiling)\n"
	        "  --features=LIST      target features, e.g. +avx2,+fma\n"
	        "  --no-fuse            do not fuse elementwise ops into producing kernels\n");
}

static const char *
opt_value(const char *arg, const char *name, int *i, int argc, char **argv)
{
	size_t n = strlen(name);
	if (strncmp(arg, name, n) != 0)
		return NULL;
	if (arg[n] == '=')
		return arg + n + 1;
	if (arg[n] == 0 && *i + 1 < argc)
		return argv[++*i];
	return NULL;
}

static bool
parse_emit(const char *list, unsigned *emit)
{
	*emit = 0;
	char *s = xstrdup(list), *save = NULL;
	bool ok = true;
	for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (strcmp(t, "obj") == 0)
			*emit |= CG_EMIT_OBJ;
		else if (strcmp(t, "asm") == 0)
			*emit |= CG_EMIT_ASM;
		else if (strcmp(t, "llvm-ir") == 0 || strcmp(t, "ll") == 0)
			*emit |= CG_EMIT_LL;
		else if (strcmp(t, "ir") == 0)
			*emit |= CG_EMIT_IR;
		else if (strcmp(t, "header") == 0)
			*emit |= CG_EMIT_HEADER;
		else {
			fprintf(stderr, "elide: error: unknown --emit kind '%s' (expected obj, asm, llvm-ir, ir, header)\n", t);
			ok = false;
		}
	}
	free(s);
	return ok;
}

Module *
cmd_load_model(const char *path, const char *policy, Diag *d)
{
	size_t n = strlen(path);
	if (n < 4 || strcmp(path + n - 4, ".eir") != 0)
		return fe_load(path, policy, d);
	if (policy) {
		diag_error(d, (Loc){ .file = path }, "--policy applies to .elide models; a .eir module carries its own");
		return NULL;
	}
	SourceFile *src = diag_read_file(path);
	if (!src) {
		diag_error(d, (Loc){ 0 }, "cannot read '%s': %s", path,
		           errno == EFBIG ? "larger than the 64 MiB limit of a source file" : strerror(errno));
		return NULL;
	}
	diag_add_source(d, src);
	return ir_parse_module(src, d);
}

int
cmd_compile(int argc, char **argv)
{
	const char *model = NULL, *weights[64], *outdir = NULL, *policy = NULL, *quant = NULL;
	uint32_t nweights = 0; /* -w, repeatable */
	int qgroup = 32;
	CgOptions o = { .opt_level = 3, .fuse = true };
	unsigned emit = CG_EMIT_OBJ | CG_EMIT_HEADER;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if ((v = opt_value(a, "--weights", &i, argc, argv)) || (v = opt_value(a, "-w", &i, argc, argv))) {
			if (nweights == sizeof weights / sizeof weights[0]) {
				fprintf(stderr, "elide: error: more than %zu weight files\n", sizeof weights / sizeof weights[0]);
				return 2;
			}
			weights[nweights++] = v;
		} else if ((v = opt_value(a, "-o", &i, argc, argv))) {
			outdir = v;
		} else if ((v = opt_value(a, "--policy", &i, argc, argv))) {
			policy = v;
		} else if ((v = opt_value(a, "--quantize", &i, argc, argv))) {
			quant = v;
		} else if ((v = opt_value(a, "--quantize-group", &i, argc, argv))) {
			char *end;
			long gl = strtol(v, &end, 10);
			if (*end || gl < 8 || gl > 4096 || gl % 8) {
				fprintf(stderr, "elide: error: expected a group that is a multiple of 8 in [8, 4096], saw '%s'\n", v);
				return 2;
			}
			qgroup = (int)gl;
		} else if ((v = opt_value(a, "--emit", &i, argc, argv))) {
			if (!parse_emit(v, &emit))
				return 2;
		} else if ((v = opt_value(a, "--target", &i, argc, argv))) {
			o.triple = v;
		} else if ((v = opt_value(a, "--cpu", &i, argc, argv))) {
			o.cpu = v;
		} else if ((v = opt_value(a, "--features", &i, argc, argv))) {
			o.features = v;
		} else if (strcmp(a, "--embed-weights") == 0) {
			o.embed_weights = true;
		} else if (strcmp(a, "--int8-activations") == 0) {
			o.int8_act = true;
		} else if (strcmp(a, "--no-fuse") == 0) {
			o.fuse = false;
		} else if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && !a[3]) {
			o.opt_level = a[2] - '0';
		} else if (a[0] == '-') {
			fprintf(stderr, "elide: error: unknown option '%s' (see 'elide compile --help')\n", a);
			return 2;
		} else if (!model) {
			model = a;
		} else {
			fprintf(stderr, "elide: error: more than one model file ('%s' and '%s')\n", model, a);
			return 2;
		}
	}
	if (!model || !nweights || !outdir) {
		fprintf(stderr, "elide: error: %s\n", !model ? "no model file given" : !nweights ? "no weights given (-w FILE)"
		                                                                          : "no output directory given (-o DIR)");
		usage(stderr);
		return 2;
	}
	emit |= CG_EMIT_MANIFEST | (o.embed_weights ? 0 : CG_EMIT_WEIGHTS);
	if (quant && ir_qformat_from_name(quant) < 0) {
		fprintf(stderr, "elide: error: expected --quantize=q8, q4, bf16 or f32, saw '%s'\n", quant);
		return 2;
	}

	static Diag d; /* the front end keeps its sources registered here for the process */
	diag_init(&d, stderr);
	Module *m = cmd_load_model(model, policy, &d);
	if (!m)
		return 1;
	if (!ir_load_weights(m, weights, nweights, &d)) {
		ir_free_module(m);
		return 1;
	}
	if (nweights == 1) /* several files have no one path to record */
		m->weights_path = arena_strdup(&m->arena, weights[0]);
	if (quant)
		pass_quantize_add_stmt(m, quant, qgroup);
	/* the default pipeline (the policy's passes, then the clean-ups), as `elide run` */
	if (!pass_run_default(m, &d) || !ir_verify(m, &d)) {
		ir_free_module(m);
		return 1;
	}
	if (mkdir(outdir, 0777) != 0 && errno != EEXIST) {
		fprintf(stderr, "elide: error: cannot create '%s': %s\n", outdir, strerror(errno));
		ir_free_module(m);
		return 1;
	}
	char *ir_text = (emit & CG_EMIT_IR) ? ir_print_module_str(m) : NULL;
	CgResult *r = cg_compile(m, &o, &d);
	int rc = 1;
	if (r) {
		char err[512];
		if (!cg_optimize(r, o.opt_level, err, sizeof err))
			diag_error(&d, (Loc){ 0 }, "%s", err);
		else if (cg_write_outputs(r, outdir, emit, ir_text, &d))
			rc = 0;
	}
	free(ir_text);
	cg_result_free(r);
	ir_free_module(m);
	return rc;
}
