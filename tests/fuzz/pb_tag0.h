/* pb_tag0.h: finds unknown fields numbered 0 in a decoded protobuf-c
 * message, recursively. protobuf-c 1.4.1 refuses a tag byte of field 0
 * (0x00) but accepts one spelled as an overlong varint (0x80 0x00), keeps it
 * as an unknown field, and packs it back as 0x00, which it then refuses:
 * a message that decodes can encode to bytes that do not. wire.c's
 * decoders refuse such input; the fuzz targets check with this independent
 * walk that nothing of the kind gets through. */
#ifndef PV_PB_TAG0_H
#define PV_PB_TAG0_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

static inline int pb_has_tag0(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	for (unsigned i = 0; i < m->n_unknown_fields; i++)
		if (m->unknown_fields[i].tag == 0)
			return 1;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *base = (const char *)m;

		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			ProtobufCMessage *const *v =
			    *(ProtobufCMessage *const *const *)(base + f->offset);

			for (size_t k = 0; k < n; k++)
				if (v[k] && pb_has_tag0(v[k]))
					return 1;
		} else {
			const ProtobufCMessage *sub =
			    *(ProtobufCMessage *const *)(base + f->offset);

			if (sub && pb_has_tag0(sub))
				return 1;
		}
	}
	return 0;
}

#endif
