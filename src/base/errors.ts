// The project's error types and exit codes, at the bottom of the layering (this file imports
// nothing), so that every layer can throw them and every CLI maps them the same way.
//
//   exit 0    done
//   exit 1    failure during the work (a NaN loss, an I/O error, a bug)
//   exit 2    bad input: a flag, a file, a prompt — reported before any work where possible
//   exit 130  interrupted (Ctrl-C / SIGTERM); train saves a checkpoint first

export const EXIT = { done: 0, failure: 1, badInput: 2, interrupted: 130 } as const;

/** Input the user can fix (a flag, a file, a prompt): CLIs print the message and exit 2. */
export class InputError extends Error {
  override name = "InputError";
}

/** A command-line flag or argument that is missing, malformed or contradicts another. */
export class UsageError extends InputError {
  override name = "UsageError";
}
