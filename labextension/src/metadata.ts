/**
 * `metadata.timeback` as the extension writes it: the server's section merged into the
 * notebook's, as timeback_jupyter.notebook_metadata.merge does on the server.
 *
 * Keys we do not know stay (in the section, and inside the activity and the run while they are
 * the same ones); an older section is upgraded on the way; a section of a newer schema_version
 * is never written over. The types come from the JSON Schema (metadata-schema.ts, generated);
 * the merge cases in test/merge-cases.ts are the ones the Python merge passes too.
 */

import { CURRENT_SCHEMA_VERSION, type TimebackSection } from './metadata-schema';
import type { TimebackMetadata } from './presence';
import { sameJson } from './runview';

export { CURRENT_SCHEMA_VERSION, type TimebackSection } from './metadata-schema';

type JsonObject = { [key: string]: unknown };

/** What to do with the notebook's section: write `section`, nothing, or refuse (newer). */
export type MergeOutcome =
  | { kind: 'write'; section: JsonObject }
  | { kind: 'same' }
  | { kind: 'newer'; version: number; message: string };

/** A section without schema_version (an author's hand-written declaration) is version 1. */
const IMPLICIT_VERSION = 1;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The section's schema_version; null when it is not a version at all. */
export function versionOf(section: JsonObject): number | null {
  if (!('schema_version' in section)) {
    return IMPLICIT_VERSION;
  }
  const version = section.schema_version;
  return typeof version === 'number' && Number.isInteger(version) && version >= 1 ? version : null;
}

export function newerMessage(version: number): string {
  return (
    `metadata.timeback was made by a newer timeback-jupyter (schema_version ${version}; ` +
    `this one reads up to ${CURRENT_SCHEMA_VERSION}): upgrade timeback-jupyter`
  );
}

/** Version 2 keeps one spelling per fact: version 1 also read `model` and `courseCode`. */
function v1ToV2(section: JsonObject): JsonObject {
  const activity = section.activity;
  if (isObject(activity)) {
    if ('model' in activity) {
      const model = activity.model;
      delete activity.model;
      if (!('stateful' in activity)) {
        activity.stateful = model === 'stateful';
      }
    }
    const course = activity.course;
    if (isObject(course) && 'courseCode' in course) {
      const code = course.courseCode;
      delete course.courseCode;
      if (!('code' in course)) {
        course.code = code;
      }
    }
  }
  return section;
}

/** STEPS[n] turns a version-n section into version n+1 (the server's chain, step for step). */
const STEPS: Record<number, (section: JsonObject) => JsonObject> = { 1: v1ToV2 };

/** A copy of `section` (of `version`) carried up to the current version; nothing validated. */
export function upgrade(section: JsonObject, version: number): JsonObject {
  let out = structuredClone(section);
  for (let step = version; step < CURRENT_SCHEMA_VERSION; step++) {
    const next = STEPS[step];
    if (next === undefined) {
      throw new Error(`no upgrade from metadata.timeback schema_version ${step}`);
    }
    out = next(out);
    out.schema_version = step + 1;
  }
  return out;
}

function merged(old: JsonObject, ours: JsonObject): JsonObject {
  const out: JsonObject = { ...old };
  for (const [key, value] of Object.entries(ours)) {
    const previous = out[key];
    out[key] = isObject(previous) && isObject(value) ? merged(previous, value) : value;
  }
  return out;
}

function sameId(old: unknown, ours: unknown): boolean {
  return isObject(old) && isObject(ours) && old.id === ours.id;
}

/**
 * The section to save: `existing` (upgraded) with `ours` written over it, keeping every key we
 * do not write. Inside `activity` and `run` keys merge too while it is the same one (same id);
 * another replaces the old whole, since what others put there described the old one.
 */
export function mergeSection(existing: unknown, ours: TimebackSection): MergeOutcome {
  if (!isObject(existing)) {
    return { kind: 'write', section: merged({}, ours) };
  }
  const version = versionOf(existing);
  if (version !== null && version > CURRENT_SCHEMA_VERSION) {
    return { kind: 'newer', version, message: newerMessage(version) };
  }
  const base = version === null ? { ...existing } : upgrade(existing, version);
  const out: JsonObject = { ...base };
  for (const [key, value] of Object.entries(ours)) {
    const previous = base[key];
    const deep = (key === 'activity' || key === 'run') && sameId(previous, value);
    out[key] = deep && isObject(previous) && isObject(value) ? merged(previous, value) : value;
  }
  return sameJson(out, existing) ? { kind: 'same' } : { kind: 'write', section: out };
}

/**
 * The server's section if it is one this extension can write: the current schema_version, an
 * activity with its id and course, a run with its id. A server of another version (upgraded
 * while this page stayed open) sends what this page cannot merge: a reload fixes it.
 */
export function isCurrentSection(
  metadata: TimebackMetadata
): metadata is TimebackMetadata & TimebackSection {
  const { activity, run } = metadata;
  return (
    metadata.schema_version === CURRENT_SCHEMA_VERSION &&
    typeof activity.id === 'string' &&
    isObject(activity.course) &&
    typeof run.id === 'string' &&
    typeof run.student === 'string' &&
    typeof run.attempt === 'number'
  );
}
