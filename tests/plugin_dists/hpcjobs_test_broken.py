"""A deliberately broken plugin: importing it fails, as a plugin with a missing dependency would."""

raise ImportError("hpcjobs-test-broken needs the module 'not_installed_anywhere'")
