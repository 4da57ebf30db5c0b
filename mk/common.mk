# Flags shared by every part built outside PGXS.  Our own code builds with
# -Wall -Wextra -Werror; third-party headers come in through -isystem so
# their warnings are not ours.
CC ?= cc
CFLAGS ?= -O2 -g
# -Wno-format-truncation: snprintf into bounded buffers is deliberate for
# messages; paths are built with checked helpers that fail when too long.
BK_WARNINGS = -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla \
	-Wmissing-prototypes -Wstrict-prototypes -Wno-unused-parameter \
	-Wno-format-truncation
BK_CFLAGS = $(CFLAGS) -std=gnu11 $(BK_WARNINGS) -D_GNU_SOURCE \
	-fstack-protector-strong -D_FORTIFY_SOURCE=2 \
	-isystem /usr/include/librdkafka \
	-I$(BK_TOP)/common
# libcurl and expat: the repository library's S3 backend.
BK_LIBS = -lrdkafka -llz4 -lcrypto -ljansson -lz -lpthread -lcurl -lexpat
