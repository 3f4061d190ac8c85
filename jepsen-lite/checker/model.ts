// Owns what a sequential specification looks like to the checkers. A model may be
// nondeterministic: `step` answers every state the operation can leave behind, which is how an
// indeterminate write (it happened, or it did not) is expressed without a powerset model.

export interface Model<S, I, O> {
  /** The state of a key before any operation touched it. */
  init(key: string): S;
  /**
   * Every state `input` can leave from `state` given the recorded `output` (undefined: no answer);
   * [] when that output is impossible from `state`.
   */
  step(state: S, input: I, output: O | undefined): S[];
  /** A string equal for equal states: the memo key, together with the set of linearized ops. */
  stateKey(state: S): string;
  describeOp(input: I, output: O | undefined): string;
  describeState(state: S): string;
  /** Why `output` is impossible from `state`, in a sentence a person can read. */
  explain(state: S, input: I, output: O | undefined): string;
}
