# ntxmeta: naltrexone trials -> effect sizes -> meta-analyses -> figures, tables, report.
# Contents: data/raw/*.csv is validated and normalised (ingest), each analysis in
# config/config.yaml gets its effect sizes (effects), its models (pool) and its
# figures (figures); tables and the report gather all analyses; the crate
# lists every file of the run with its checksum.


# common.smk checks data/raw/ and the config first, so that every problem
# (a YAML syntax error too) is reported with its file and line.
include: "workflow/rules/common.smk"


configfile: "config/config.yaml"


include: "workflow/rules/ingest.smk"
include: "workflow/rules/effects.smk"
include: "workflow/rules/pool.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/joint.smk"
include: "workflow/rules/crate.smk"


rule all:
    default_target: True
    input:
        all_outputs,
        "ro-crate-metadata.json",
