"""A cluster's `failure:` and `logs:` sections: their jobs and sensors, and their run when the run's process ends.

`failure.py` and `logs.py` build each section's job (`job.py`) and the run-status sensor that launches it;
`run_end.py` runs them in the process that orchestrated the run, so they fire without a daemon too.
"""
