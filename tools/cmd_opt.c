/* cmd_opt.c - `elide opt`: placeholder until its issue lands; says so and fails. */
#include <stdio.h>

#include "tools/driver.h"

int
cmd_opt(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "elide: error: 'opt' is not available in this build yet\n");
	return 1;
}
