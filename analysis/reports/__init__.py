"""The reports: a run's, a sweep's and a chaos run's pages (HTML and Markdown), their tables and plots."""
