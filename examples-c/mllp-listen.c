#include "mllp.h"
int main(void){return 0;}
