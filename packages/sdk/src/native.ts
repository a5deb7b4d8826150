/**
 * The native binding, loaded lazily so everything before load (compile, open-free parsing,
 * decoders) works without the addon, and injectable so unit tests can pass a fake.
 */
import { createRequire } from 'node:module';
import type * as Native from '@tslcc/native';

export type Binding = typeof Native;
let binding: Binding | undefined;

export function native(): Binding {
  if (!binding) binding = createRequire(import.meta.url)('@tslcc/native') as Binding;
  return binding;
}

/** Replace the binding (tests). Returns the previous one. */
export function setBinding(b: Binding | undefined): Binding | undefined {
  const prev = binding;
  binding = b;
  return prev;
}
