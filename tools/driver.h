/* driver.h - the subcommands of the `elide` driver, one file each (cmd_*.c).
 * Each takes the arguments after the subcommand name (argv[0] is the subcommand)
 * and returns the process exit code: 0 success, 1 errors in the input, 2 usage. */
#ifndef ELIDE_DRIVER_H
#define ELIDE_DRIVER_H

int cmd_check(int argc, char **argv);   /* parse, check, verify a model */
int cmd_opt(int argc, char **argv);     /* run passes over .eir or .elide, print IR */
int cmd_run(int argc, char **argv);     /* run an entry: JIT or --interp */
int cmd_compile(int argc, char **argv); /* emit object, header, blob, manifest */
int cmd_import(int argc, char **argv);  /* checkpoint (HF directory, GGUF) to .elide */

struct Module;
struct Diag;
/* A model in the language (.elide, with the policy chosen) or in textual IR (.eir);
 * NULL after errors reported through d (cmd_compile.c). */
struct Module *cmd_load_model(const char *path, const char *policy, struct Diag *d);

#endif
