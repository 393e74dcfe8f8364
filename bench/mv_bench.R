#!/usr/bin/env Rscript
## Timing of metafor 3.8-1 rma.mv (default control), confint() and
## clubSandwich coef_test(CR2) on the cases of bench/mv_bench.py.
## Usage: Rscript mv_bench.R FIXTURES_DIR SYNTH_CSV OUT.json
suppressPackageStartupMessages({library(metafor); library(clubSandwich); library(jsonlite)})
a <- commandArgs(TRUE)
fx <- a[1]
tm <- function(expr, reps = 3) {
  e <- substitute(expr); f <- parent.frame()
  eval(e, f)  # warm-up
  t <- replicate(reps, system.time(eval(e, f))[["elapsed"]])
  median(t)
}
out <- list()
rd <- function(name) read.csv(file.path(fx, name, "data.csv"))
Vof <- function(name) { j <- fromJSON(file.path(fx, name, "out.json")); as.matrix(j$inputs$V) }
d <- rd("konstantopoulos2011_REML")
out$konstantopoulos2011_REML <- list(
  fit = tm(res <- rma.mv(yi, vi, random = ~ 1 | district/school, data = d)),
  confint = tm(confint(res), 1), CR2 = tm(coef_test(res, vcov = "CR2", cluster = d$district)))
d <- rd("berkey1998_UN"); V <- Vof("berkey1998_UN")
out$berkey1998_UN <- list(
  fit = tm(res <- rma.mv(yi, V, mods = ~ outcome - 1, random = ~ outcome | trial, struct = "UN", data = d)),
  confint = tm(suppressWarnings(confint(res)), 1), CR2 = tm(coef_test(res, vcov = "CR2", cluster = d$trial)))
d <- rd("ishak2007_AR"); V <- Vof("ishak2007_AR")
out$ishak2007_AR <- list(
  fit = tm(res <- rma.mv(yi, V, mods = ~ factor(time) - 1, random = ~ time | study, struct = "AR", data = d)),
  confint = tm(suppressWarnings(confint(res)), 1), CR2 = tm(coef_test(res, vcov = "CR2", cluster = d$study)))
d <- rd("hasselblad1998_network_REML"); V <- Vof("hasselblad1998_network_REML")
out$hasselblad1998_network_REML <- list(
  fit = tm(res <- rma.mv(yi, V, mods = ~ X.self_help + X.ind_counseling + X.grp_counseling - 1,
                         random = ~ comp | study, rho = 1/2, data = d)),
  confint = tm(confint(res), 1), CR2 = tm(coef_test(res, vcov = "CR2", cluster = d$study)))
d <- read.csv(a[2])
out$synthetic_3level <- list(
  fit = tm(res <- rma.mv(yi, vi, random = ~ 1 | district/school, data = d), 1),
  sigma2 = res$sigma2, beta = as.numeric(res$beta))
writeLines(toJSON(out, digits = I(15), auto_unbox = TRUE), a[3])
