# iterjob: PGXS build
EXTENSION = iterjob
MODULE_big = iterjob
# src/ holds the ground (module entry, GUCs, identity); each folder under it
# one layer (see README.md, "How the code is laid out")
SRCS = $(sort $(wildcard src/*.c src/*/*.c))
OBJS = $(patsubst %.c,%.o,$(SRCS))
DATA = $(wildcard sql/iterjob--*.sql)
PGFILEDESC = "iterjob - parallel, resumable batch-iteration jobs"

REGRESS = $(patsubst sql/%.sql,%,$(sort $(filter-out sql/iterjob--%,$(wildcard sql/*.sql))))
REGRESS_OPTS = --inputdir=. --outputdir=. --load-extension=iterjob
EXTRA_CLEAN = .pg-build

# libpq: the connections a worker keeps to the nodes of a Citus cluster
PG_CPPFLAGS = -I$(srcdir)/src -I$(libpq_srcdir)
SHLIB_LINK_INTERNAL = $(libpq)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

override CFLAGS += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers $(EXTRA_CFLAGS)

# every object depends on the shared headers
$(OBJS): $(wildcard src/*.h src/*/*.h)

# and on the installation it was built against: switching PG_CONFIG to
# another major (or another build of it) rebuilds everything
PG_BUILD_ID := $(shell $(PG_CONFIG) --version) $(shell $(PG_CONFIG) --includedir-server)
$(shell echo '$(PG_BUILD_ID)' | cmp -s - .pg-build || echo '$(PG_BUILD_ID)' > .pg-build)
$(OBJS): .pg-build

# static analysis of src/ (cppcheck and clang-tidy, both must report nothing)
PG_INCLUDEDIR_SERVER := $(shell $(PG_CONFIG) --includedir-server)
lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,style,performance,portability \
		-I $(PG_INCLUDEDIR_SERVER) -I src --suppress='*:$(PG_INCLUDEDIR_SERVER)/*' \
		--suppress=toomanyconfigs src/
	clang-tidy --quiet --warnings-as-errors='*' $(SRCS) -- -I$(PG_INCLUDEDIR_SERVER) -I$(includedir) -Isrc

.PHONY: lint

# the core suites with the server under valgrind (test/valgrind.sh): fails
# on invalid reads or writes in iterjob's code; slow, not part of CI
valgrind:
	$(if $(filter command line environment,$(origin PG_CONFIG)),PG_CONFIG=$(PG_CONFIG)) test/valgrind.sh

.PHONY: valgrind
