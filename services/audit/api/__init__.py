"""The audit's HTTP API: readers (supervisors and station managers) read trails, timeliness
and reports; supervisors verify the trail."""
