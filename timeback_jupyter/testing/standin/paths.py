"""The paths of Timeback's API the stand-in answers, as the official clients call them."""

EVENT_PATH = "/caliper/event"
VALIDATE_PATH = "/caliper/event/validate"
STORED_EVENT_PREFIX = "/caliper/events/"  # + the event's id: GET one stored event
TOKEN_PATH = "/oauth2/token"
USERS_PATH = "/ims/oneroster/rostering/v1p2/users"
JOB_STATUS_PATH = "/jobs/{id}/status"  # the official client's CaliperPaths.job_status
