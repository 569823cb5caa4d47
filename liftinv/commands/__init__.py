"""Sub-commands of the ``liftinv`` CLI, one module each (``add_parser`` + ``run``)."""
