// Generated from timeback_jupyter/notebook_metadata/schemas/v2.json
// by scripts/gen_metadata_types.py: do not edit; re-run it when the schema changes.

/** The schema_version this extension writes and reads up to. */
export const CURRENT_SCHEMA_VERSION = 2;

/**
 * What a notebook declares (its activity) and what timeback-jupyter keeps in it so the student
 * resumes days later (its run). Keys not named here belong to someone else and every writer keeps
 * them. Version 2 adds the author's expected XP: Timeback's XP system makes XP content-intrinsic
 * (each activity has an expected XP, the minutes a competent student needs, set by its author and
 * never taken from how long a student took), so activity.xp, activity.mastery_threshold and
 * activity.xp_without_questions become part of the declaration. A reader that knows only version 1
 * would award focused minutes for such a notebook, so the version number changes and readers refuse
 * a version newer than theirs. Version 2 also has one spelling per fact: version 1's model and
 * courseCode are folded into stateful and code on upgrade, since an old spelling kept beside the
 * key timeback-jupyter writes would contradict it.
 */
export interface TimebackSection {
  schema_version: 2;
  activity?: TimebackActivity;
  run?: TimebackRun;
  [key: string]: unknown;
}

/**
 * The activity the notebook is: a slug, a name students see, its course and whether it spans
 * sessions.
 */
export interface TimebackActivity {
  id: string;
  name?: string;
  course: TimebackCourse;
  stateful?: boolean;
  /**
   * Expected XP: the minutes a competent student needs for the whole activity (a timed run-through,
   * rounded), set by the author. Mastered and focused earns this; absent, the activity earns its
   * focused minutes as in version 1.
   */
  xp?: number;
  /**
   * The share of questions answered correctly that counts as mastered (default 0.9); Timeback
   * awards no XP below 0.8.
   */
  mastery_threshold?: number;
  /**
   * The author's word that completing this activity verifies its learning without questions (e.g.
   * its cells must run): it then earns its expected XP with no exercise recorded. Absent or false,
   * an activity without questions earns 0 XP, as Timeback gives passive content XP only once a quiz
   * verifies it.
   */
  xp_without_questions?: boolean;
  model?: never;
  [key: string]: unknown;
}

/**
 * Timeback's course of the activity, as Timeback selects it: a grade with its subject, or a course
 * code.
 */
export interface TimebackCourse {
  subject?:
    | 'Reading'
    | 'Language'
    | 'Vocabulary'
    | 'Social Studies'
    | 'Writing'
    | 'Science'
    | 'FastMath'
    | 'Math'
    | 'None'
    | 'Other';
  grade?: number;
  code?: string;
  courseCode?: never;
  [key: string]: unknown;
}

/**
 * The student's run, written by timeback-jupyter. Never refused when damaged: the server ignores a
 * run it cannot use and starts a new attempt, saying why.
 */
export interface TimebackRun {
  id: string;
  /** A short hash of the student's email, never the email. */
  student: string;
  status: 'active' | 'ended' | 'completed';
  attempt: number;
  /** The notebook path the run began in: a copy elsewhere starts its own attempt. */
  origin?: string | null;
  [key: string]: unknown;
}
