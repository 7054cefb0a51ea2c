/* commands: one function per verb of `lootlog` (docs/design.md, "CLI"), each in a file
 * of its own; main.c finds the verb in its table and calls it with the parsed options.
 * Each returns the process's exit status. */
#ifndef LOOTLOG_COMMANDS_COMMANDS_H
#define LOOTLOG_COMMANDS_COMMANDS_H

#include "commands/options.h"

int command_serve(cli_options *opt);
int command_replay(cli_options *opt);
int command_snapshot(cli_options *opt);
int command_restore(cli_options *opt);
int command_migrate(cli_options *opt);
int command_gen(cli_options *opt);
int command_topic(cli_options *opt);   /* commands/topic.c */
int command_options(cli_options *opt); /* commands/options.c: --markdown, or the usage */

#endif
