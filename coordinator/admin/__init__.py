"""Operating the platform: the audit log, administrators' actions on nodes, jobs, users and prices, access
checks for tokens that outlive a change of rights, and the overview statistics."""
