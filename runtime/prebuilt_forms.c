/* prebuilt_forms.c - the prebuilt kernel forms linked into this program
 * (runtime/cpu_code.h): BUILD/gen/prebuilt_forms.h, written at build time
 * by tools/gen_forms.c from the corpus tools/forms.kiln.  A translation unit
 * of its own so that the generator, which links runtime/cpu_code.c, does
 * not include its own output. */
#include "runtime/cpu_code.h"

#if __has_include("prebuilt_forms.h")
#include "prebuilt_forms.h" /* BUILD/gen */
#endif

const CpuPrebuiltForms *cpu_prebuilt_forms(void) {
#ifdef KILN_PREBUILT_FORMS
    static const CpuPrebuiltForms forms = {prebuilt_forms_suffix,
                                           (int)(sizeof prebuilt_forms_list / sizeof prebuilt_forms_list[0]),
                                           prebuilt_forms_list};
    return &forms;
#else
    return NULL;
#endif
}
