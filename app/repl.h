/* repl.h - the interactive prompt, `kiln repl` (docs/repl.md). */
#ifndef KILN_REPL_H
#define KILN_REPL_H

#include <stdbool.h>

/* Runs the prompt on standard input until :quit or end of input.  `device`
 * names the backend (NULL: backend_default()).  On a terminal it edits lines
 * with libedit and keeps a history file, unless `force_plain`; from a pipe it
 * prints no prompt and reads plain lines.  Returns the exit status: 0, or 1
 * if a line failed while reading from a pipe, 3 if the device is unusable. */
int repl_main(const char *device, bool force_plain);

#endif
