import { describe, expect, it } from 'vitest';

import {
  CURRENT_SCHEMA_VERSION,
  isCurrentSection,
  mergeSection,
  upgrade,
  versionOf,
  type TimebackSection
} from '../src/metadata';
import type { TimebackMetadata } from '../src/presence';
import { sameJson } from '../src/runview';
import { CASES } from './merge-cases';

// A section the schema describes, with its activity and run, is what presence.ts hands around:
// this stops compiling if the generated types and presence's TimebackMetadata part ways.
type Sent = TimebackSection & Required<Pick<TimebackSection, 'activity' | 'run'>>;
const asSent = (section: Sent): TimebackMetadata => section;

const OURS: Sent = {
  schema_version: 2,
  activity: {
    id: 'fractions-lesson',
    name: 'Fractions lesson',
    course: { subject: 'Math', grade: 3 },
    stateful: true
  },
  run: {
    id: '0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11',
    student: '5f1d2c3b4a596877',
    status: 'active',
    attempt: 1,
    origin: 'lesson.ipynb'
  }
};

describe('mergeSection: the cases the Python merge passes too', () => {
  it('has cases', () => {
    expect(CASES.length).toBeGreaterThan(5);
  });
  it.each(CASES.map(c => [c.name, c] as const))('%s', (_, c) => {
    const before = structuredClone(c.existing);
    const outcome = mergeSection(c.existing, c.ours);
    expect(c.existing).toEqual(before); // the notebook's section is never changed in place
    if (c.refused === 'newer') {
      expect(outcome.kind).toBe('newer');
      return;
    }
    if (sameJson(c.existing, c.expect)) {
      expect(outcome).toEqual({ kind: 'same' });
    } else {
      expect(outcome).toEqual({ kind: 'write', section: c.expect });
    }
  });
});

describe('mergeSection', () => {
  it('keeps keys it does not know in the section, the activity and the run', () => {
    const existing = {
      ...asSent(OURS),
      reviewer: 'ms-k',
      activity: { ...OURS.activity, hint_level: 2 },
      run: { ...OURS.run, status: 'ended', grader: { seen: true } }
    };
    const outcome = mergeSection(existing, OURS);
    expect(outcome).toEqual({
      kind: 'write',
      section: {
        ...OURS,
        reviewer: 'ms-k',
        activity: { ...OURS.activity, hint_level: 2 },
        run: { ...OURS.run, grader: { seen: true } }
      }
    });
  });

  it('refuses a newer schema_version with the message the server gives', () => {
    const outcome = mergeSection({ schema_version: 3, activity: { id: 'x' } }, OURS);
    expect(outcome).toEqual({
      kind: 'newer',
      version: 3,
      message:
        'metadata.timeback was made by a newer timeback-jupyter (schema_version 3; ' +
        'this one reads up to 2): upgrade timeback-jupyter'
    });
  });

  it('says there is nothing to write when only key order differs', () => {
    const reordered = { run: OURS.run, activity: OURS.activity, schema_version: 2 };
    expect(mergeSection(reordered, OURS)).toEqual({ kind: 'same' });
  });
});

describe('versions', () => {
  it('reads an absent schema_version as 1 and refuses what is no version', () => {
    expect(versionOf({ activity: {} })).toBe(1);
    expect(versionOf({ schema_version: 2 })).toBe(2);
    for (const bad of ['2', 1.5, 0, null, true]) {
      expect(versionOf({ schema_version: bad })).toBeNull();
    }
  });

  it('upgrades version 1 to the current one on a copy', () => {
    const v1 = { activity: { id: 'a', course: { courseCode: 'ALG-1' }, model: 'stateful' } };
    const before = structuredClone(v1);
    expect(upgrade(v1, 1)).toEqual({
      schema_version: CURRENT_SCHEMA_VERSION,
      activity: { id: 'a', course: { code: 'ALG-1' }, stateful: true }
    });
    expect(v1).toEqual(before);
  });
});

describe('isCurrentSection', () => {
  it('accepts what the server sends and refuses another version or a run without id', () => {
    expect(isCurrentSection(asSent(OURS))).toBe(true);
    expect(isCurrentSection({ ...asSent(OURS), schema_version: 3 })).toBe(false);
    const { id: _, ...noId } = OURS.run;
    expect(
      isCurrentSection({ ...asSent(OURS), run: noId as unknown as TimebackMetadata['run'] })
    ).toBe(false);
  });
});
