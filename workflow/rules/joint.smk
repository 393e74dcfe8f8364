# Joint models (config timepoints and networks; src/ntxmeta/joint.py): every
# time point of each trial in one multilevel model, and networks of every
# treatment the rows compare. Their rows come from the comparisons without the
# rules the model handles itself (validated at parse time, like effects).
rule joint_effects:
    output:
        effects=update("data/processed/joint/{joint}.csv"),
        left_out=update("data/processed/joint_left_out/{joint}.csv"),
    log:
        "logs/joint/effects/{joint}.log",
    params:
        digest=joint_digest,
    run:
        ntx.rule_joint_effects(PREFLIGHT, output, wildcards, log[0])


rule joint_pool:
    input:
        "data/processed/joint/{joint}.csv",
    output:
        update("results/joint/{joint}/result.json"),
    log:
        "logs/joint/pool/{joint}.log",
    params:
        digest=joint_digest,
    run:
        ntx.rule_joint_pool(PREFLIGHT, input, output, wildcards, log[0])


rule joint_figure:
    input:
        "results/joint/{joint}/result.json",
    output:
        png=report(
            update("results/figures/{jkind}/{joint}.png"),
            caption="../report/joint.rst",
            category="Time points and networks",
        ),
        svg=update("results/figures/{jkind}/{joint}.svg"),
    log:
        "logs/figures/{jkind}/{joint}.log",
    wildcard_constraints:
        jkind="timepoints|network_graph|network_forest",
    run:
        ntx.rule_joint_figure(input, output, wildcards, log[0])


rule joint_tables:
    input:
        joint_results,
    output:
        timepoints_csv=update("results/tables/timepoints.csv"),
        timepoints_md=update("results/tables/timepoints.md"),
        network_effects_csv=update("results/tables/network_effects.csv"),
        network_effects_md=update("results/tables/network_effects.md"),
        network_ranking_csv=update("results/tables/network_ranking.csv"),
        network_ranking_md=update("results/tables/network_ranking.md"),
        network_inconsistency_csv=update("results/tables/network_inconsistency.csv"),
        network_inconsistency_md=update("results/tables/network_inconsistency.md"),
        network_transitivity_csv=update("results/tables/network_transitivity.csv"),
        network_transitivity_md=update("results/tables/network_transitivity.md"),
        network_league_csv=update("results/tables/network_league.csv"),
        network_league_md=update("results/tables/network_league.md"),
    log:
        "logs/tables/joint.log",
    run:
        ntx.rule_joint_tables(input, output, log[0])
