// Generated from tests/notebook_metadata_cases.json by scripts/gen_metadata_types.py: do not
// edit. The Python merge passes the same cases (tests/test_notebook_metadata.py).

import type { TimebackSection } from '../src/metadata-schema';

export interface MergeCase {
  name: string;
  existing: unknown;
  ours: TimebackSection;
  expect?: Record<string, unknown>;
  refused?: 'newer';
}

export const CASES = JSON.parse(String.raw`[
 {
  "name": "no section yet: ours",
  "existing": null,
  "ours": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  },
  "expect": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  }
 },
 {
  "name": "a section that is not an object is replaced",
  "existing": "garbage",
  "ours": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  },
  "expect": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  }
 },
 {
  "name": "the author's declaration without schema_version gains the run and keeps expected XP",
  "existing": {
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true,
    "xp": 25,
    "mastery_threshold": 0.85
   }
  },
  "ours": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  },
  "expect": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true,
    "xp": 25,
    "mastery_threshold": 0.85
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  }
 },
 {
  "name": "version 1 is upgraded and keeps unknown keys in the section, activity, course and run",
  "existing": {
   "schema_version": 1,
   "other_tool": {
    "k": 1
   },
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "model": "stateful",
    "author": "ms-k",
    "course": {
     "subject": "Math",
     "grade": 3,
     "note": "unit 4"
    }
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "ended",
    "attempt": 1,
    "origin": "lesson.ipynb",
    "grader": {
     "seen": true
    }
   }
  },
  "ours": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  },
  "expect": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3,
     "note": "unit 4"
    },
    "stateful": true,
    "author": "ms-k"
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb",
    "grader": {
     "seen": true
    }
   },
   "other_tool": {
    "k": 1
   }
  }
 },
 {
  "name": "version 1's courseCode becomes code",
  "existing": {
   "schema_version": 1,
   "activity": {
    "id": "algebra",
    "name": "Algebra",
    "course": {
     "courseCode": "ALG-1"
    }
   }
  },
  "ours": {
   "schema_version": 2,
   "activity": {
    "id": "algebra",
    "name": "Algebra",
    "course": {
     "subject": "Other",
     "code": "ALG-1"
    },
    "stateful": false
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  },
  "expect": {
   "schema_version": 2,
   "activity": {
    "id": "algebra",
    "name": "Algebra",
    "course": {
     "subject": "Other",
     "code": "ALG-1"
    },
    "stateful": false
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  }
 },
 {
  "name": "on upgrade a given stateful wins over version 1's model, as version 1 read it",
  "existing": {
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": false,
    "model": "stateful"
   }
  },
  "ours": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": false
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  },
  "expect": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": false
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  }
 },
 {
  "name": "a new run replaces the old one whole; the activity's unknown keys stay",
  "existing": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true,
    "author": "ms-k"
   },
   "run": {
    "id": "7d0e2a9c-1b3f-4e5a-8c6d-2f4a6b8c0e1d",
    "student": "5f1d2c3b4a596877",
    "status": "completed",
    "attempt": 1,
    "origin": "lesson.ipynb",
    "grader": {
     "seen": true
    }
   }
  },
  "ours": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  },
  "expect": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true,
    "author": "ms-k"
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  }
 },
 {
  "name": "another activity replaces the declaration whole",
  "existing": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-quiz",
    "name": "Quiz",
    "xp": 10,
    "course": {
     "subject": "Math",
     "grade": 3
    }
   },
   "note": "kept"
  },
  "ours": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  },
  "expect": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   },
   "note": "kept"
  }
 },
 {
  "name": "a schema_version that is no version is written over, other keys kept",
  "existing": {
   "schema_version": "one",
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "extra": [
    1,
    2
   ]
  },
  "ours": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  },
  "expect": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   },
   "extra": [
    1,
    2
   ]
  }
 },
 {
  "name": "the same section: nothing changes",
  "existing": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  },
  "ours": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  },
  "expect": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  }
 },
 {
  "name": "a newer version is never written over",
  "existing": {
   "schema_version": 3,
   "activity": {
    "id": "x"
   },
   "run": {
    "id": "7d0e2a9c-1b3f-4e5a-8c6d-2f4a6b8c0e1d"
   }
  },
  "ours": {
   "schema_version": 2,
   "activity": {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {
     "subject": "Math",
     "grade": 3
    },
    "stateful": true
   },
   "run": {
    "id": "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11",
    "student": "5f1d2c3b4a596877",
    "status": "active",
    "attempt": 1,
    "origin": "lesson.ipynb"
   }
  },
  "refused": "newer"
 }
]`) as MergeCase[];
