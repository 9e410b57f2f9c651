"""A document-summary service in two designs: `inline` summarises in the request, `queued` hands the work to Celery."""
