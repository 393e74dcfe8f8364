# The RO-Crate of the run (ro-crate-metadata.json at the project folder, the
# crate's root): the workflow, the config and data, every output, with checksums.
rule crate:
    input:
        workflow=crate_workflow_files,
        inputs=crate_inputs,
        outputs=crate_outputs,
    output:
        update("ro-crate-metadata.json"),
    log:
        "logs/crate.log",
    run:
        ntx.rule_crate(input, output, log[0])
