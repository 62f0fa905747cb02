"""Task domain of threadtask: models, rules, storage and the REST API."""
