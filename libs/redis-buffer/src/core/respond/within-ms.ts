/** Waits for `promise` at most `ms`, and never rejects: for the steps of a shutdown. */
export function withinMs(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const elapsed = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([promise.then(() => undefined, () => undefined), elapsed]).finally(() => clearTimeout(timer));
}
