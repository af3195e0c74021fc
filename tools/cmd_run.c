/* cmd_run.c - `elide run`: placeholder until its issue lands; says so and fails. */
#include <stdio.h>

#include "tools/driver.h"

int
cmd_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "elide: error: 'run' is not available in this build yet\n");
	return 1;
}
