"""Jobs: submission, inputs (content-addressed blobs), escrow, tasks, status, logs, results and cancel."""
