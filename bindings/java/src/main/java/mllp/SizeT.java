package mllp;

import com.sun.jna.IntegerType;
import com.sun.jna.Native;

/** C {@code size_t} (unsigned, pointer-sized). Internal to the binding; public only because JNA instantiates it. */
public final class SizeT extends IntegerType {
    private static final long serialVersionUID = 1L;

    public SizeT() {
        this(0);
    }

    public SizeT(long value) {
        super(Native.SIZE_T_SIZE, value, true);
    }
}
